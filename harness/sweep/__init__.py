"""Sweep grids over the training config: list, run one cell, run all locally, or submit a Slurm job array.

A sweep file (``sweeps/*.yaml``) holds a ``base`` config (the keys of :mod:`harness.config`) and a
``grid``; every combination of grid values is one *cell*, i.e. one ``harness.train.run`` and one MLflow
child run under the sweep's parent run. A cell is identified by ``harness.config.cell_key`` (a hash of
what it computes), stored as the ``harness.cell_key`` tag, so a rerun skips cells already FINISHED.

- :mod:`~harness.sweep.grid`: sweep files, cells, ``--where`` selection, name checks;
- :mod:`~harness.sweep.tracking`: the store, experiment and parent run (created once), pending cells, finalize;
- :mod:`~harness.sweep.cell`: one cell as one MLflow run or archive record;
- :mod:`~harness.sweep.adopt`: finished cells another sweep shares (same key), relabelled into this one's archive;
- :mod:`~harness.sweep.local` / :mod:`~harness.sweep.slurm`: fan-out on this machine or as a Slurm array;
- :mod:`~harness.sweep.cli`: ``harness sweep`` / ``python -m harness.sweep``.
"""

from harness.run_schema import finished_keys
from harness.sweep.adopt import adopt, relabel
from harness.sweep.cell import archive_folder, archived_keys, cell_tags, run_cell
from harness.sweep.cli import list_cells, main, parse_args
from harness.sweep.grid import Cell, Sweep, check_names, load_sweep, select
from harness.sweep.local import cell_argv, log_dir, pre_encode, run_archive, run_local, task_env
from harness.sweep.slurm import array_spec, sbatch, slurm_script, submit
from harness.sweep.tracking import Context, context_from_env, finalize, init_store, pending, prepare, store_uri, sweep_tags

__all__ = [
    "Cell", "Context", "Sweep", "adopt", "archive_folder", "archived_keys", "array_spec", "cell_argv", "cell_tags", "check_names",
    "context_from_env", "finalize", "finished_keys", "init_store", "list_cells", "load_sweep", "log_dir", "main",
    "parse_args", "pending", "pre_encode", "prepare", "relabel", "run_archive", "run_cell", "run_local", "sbatch", "select",
    "slurm_script", "store_uri", "submit", "sweep_tags", "task_env",
]
