"""Several caches in one run: every dataset present in the data folder (``harness encode`` without
``--dataset``), or a sweep's (dataset, encoder, modality) list. Each target gets its own cache; complete
ones are skipped; one failing target is reported and the others still run; a summary comes at the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from harness.data import get_spec, list_datasets, load_dataset
from harness.data.errors import DataError
from harness.data.folder import folder_spec
from harness.data.paths import data_root, dataset_folder
from harness.encoding.dist import RankFailed
from harness.encoding.job import run_job
from harness.encoding.options import EncodeOptions


@dataclass
class Outcome:
    dataset: str
    encoder: str
    modality: str | None
    state: str  # encoded | complete | failed
    folder: Path | None = None
    error: str | None = None


def present_datasets(data_dir: str | Path | None = None) -> list[str]:
    """Datasets whose files are in the data folder: registered names with a complete layout, then
    sub-folders the harness can read without code (``dataset.yaml`` / RecBole / CSV / Parquet)."""
    names = []
    for name in list_datasets():
        try:
            get_spec(name).find_layout(dataset_folder(name, data_dir))
            names.append(name)
        except DataError:
            pass
    root = data_root(data_dir)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name in names or folder.name in list_datasets() or folder.name.startswith("."):
            continue
        try:
            if folder_spec(folder.name, folder) is not None:
                names.append(folder.name)
        except DataError:
            pass
    return names


def encode_many(targets: Iterable[tuple[str, str | Path | None, EncodeOptions]]) -> list[Outcome]:
    """Run the job for each (dataset name, data dir, options), in order. A target that fails is recorded
    and the next one runs; only a broken process group (``RankFailed``) stops the loop."""
    outcomes = []
    for name, data_dir, opts in targets:
        try:
            folder, state = run_job(load_dataset(name, data_dir=data_dir), opts)
            outcomes.append(Outcome(name, opts.encoder, opts.modality, state, folder))
        except RankFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the summary; the other targets still run
            outcomes.append(Outcome(name, opts.encoder, opts.modality, "failed", error=f"{type(exc).__name__}: {exc}"))
    return outcomes


def encode_present(data_dir: str | Path | None, opts: EncodeOptions) -> list[Outcome]:
    """Every dataset present in the data folder, each into its own cache."""
    names = present_datasets(data_dir)
    if not names:
        raise DataError(f"no dataset is present in {data_root(data_dir)}: nothing to encode "
                        "(see `harness data list`; or pass --dataset NAME)")
    return encode_many((name, data_dir, replace(opts)) for name in names)


def summary(outcomes: list[Outcome]) -> str:
    """One line per target, then the totals."""
    lines = [f"encode summary: {len(outcomes)} target(s)"]
    for o in outcomes:
        what = f"{o.dataset} / {o.encoder}" + (f" / {o.modality}" if o.modality else "")
        detail = {"encoded": f"encoded -> {o.folder}", "complete": f"already complete ({o.folder})"}.get(o.state, f"FAILED: {o.error}")
        lines.append(f"  {what}: {detail}")
    failed = sum(o.state == "failed" for o in outcomes)
    lines.append(f"  {len(outcomes) - failed} ok, {failed} failed")
    return "\n".join(lines)
