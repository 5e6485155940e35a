"""Results that travel: a sweep's runs as a folder of small JSON files (in the spirit of MTEB's results repo).

An archive is a folder ``<dir>/<sweep-or-experiment-name>/`` holding

- ``sweep.json``: the experiment name and the sweep parent run's tags (``harness.axes.<g>`` ...),
- ``<cell_key>.json``, one per cell: ``{"schema": 1, "cell_key", "run_id", "run_name", "status", "tags",
  "params", "metrics" (latest value per MLflow key, as ``mlflow.search_runs`` shows it), "history"
  (every logged point per key: ``[[step, value], ...]``), "ranks" ({"test": {"above", "tied", "n", "digest"}},
  counts as base64 of zlib-compressed int32 little-endian), "start_time", "end_time" (ms since the epoch)}``.

Keys are sorted and floats written as Python's shortest round-trip repr, so files diff well and
re-exporting unchanged runs rewrites identical bytes. Machine, library versions and timings travel in
the tags and metrics the run already logs; other artifacts (config.yaml = the params, results.json = the
final metrics) are not copied.

- :mod:`~harness.archive.records`: the files (atomic, sorted JSON; rank counts as text);
- :mod:`~harness.archive.logger`: :class:`ArchiveLogger`, a :class:`~harness.tracking.MemoryLogger` that writes its
  cell record at ``finish()`` (for machines without an MLflow store, e.g. a GPU box); :func:`write_sweep` adds
  ``sweep.json``;
- :mod:`~harness.archive.reading`: :func:`read` / :func:`parent` / :class:`Archive`: archive -> the DataFrame
  ``mlflow.search_runs`` gives (``run_id``, ``status``, ``metrics.*``, ``params.*``, ``tags.*`` ...), so every report
  runs on it unchanged; ``Archive.history`` / ``Archive.ranks`` give a row's per-epoch curves and rank counts;
- :mod:`~harness.archive.exchange`: :func:`export` (MLflow experiment -> archive: newest FINISHED run per cell key,
  histories, ranks artifact) and :func:`import_archive` (archive -> FINISHED MLflow runs, children of the
  experiment's newest sweep parent, for cells not FINISHED there yet, so ``harness sweep ... --local`` skips them).

CLI (:mod:`~harness.archive.cli`): ``harness archive export --experiment X --to DIR``, ``harness archive import DIR [--experiment X]``,
``harness archive list DIR [DIR ...]``.
"""

from harness.archive.cli import listing, main
from harness.archive.exchange import download_ranks, export, import_archive, run_record
from harness.archive.logger import ArchiveLogger, now_ms
from harness.archive.reading import INFO_COLUMNS, Archive, parent, read
from harness.archive.records import (
    SCHEMA,
    SWEEP_FILE,
    cell_file,
    decode_counts,
    dumps,
    encode_counts,
    latest,
    load_record,
    ranks_from_record,
    ranks_record,
    write_cell,
    write_json,
    write_sweep,
)

__all__ = [
    "INFO_COLUMNS", "SCHEMA", "SWEEP_FILE", "Archive", "ArchiveLogger", "cell_file", "decode_counts", "download_ranks",
    "dumps", "encode_counts", "export", "import_archive", "latest", "listing", "load_record", "main", "now_ms", "parent",
    "ranks_from_record", "ranks_record", "read", "run_record", "write_cell", "write_json", "write_sweep",
]
