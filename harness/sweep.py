"""Sweep grids over the training config: list, run one cell, run all locally, or submit a Slurm job array.

A sweep file (``sweeps/*.yaml``) holds a ``base`` config (the keys of :mod:`harness.config`) and a
``grid``; every combination of grid values is one *cell*, i.e. one ``harness.train.run`` and one MLflow
child run under the sweep's parent run. A cell is identified by ``harness.config.cell_key`` (a hash of
what it computes), stored as the ``harness.cell_key`` tag, so a rerun skips cells already FINISHED.

Two MLflow races are avoided on purpose (shared/docs/SLURM_MLFLOW_RECIPE.md): the store schema, the
experiment and the parent run are created by ONE process (``prepare``) before any cell starts, and the
cells get the experiment id through ``MLFLOW_EXPERIMENT_ID`` instead of calling ``set_experiment``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import archive
from harness import config as C
from harness.run_schema import ROLE_CELL, ROLE_SWEEP, TAG_KEY, TAG_ROLE, TAG_SWEEP, finished_keys, run_tags, search_all

ENV_EXPERIMENT = "MLFLOW_EXPERIMENT_ID"
ENV_PARENT = "HARNESS_PARENT_RUN_ID"
TOP_KEYS = ("name", "experiment", "description", "base", "grid", "exclude")
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class Cell:
    """One grid point: its position, the values chosen on each axis, and the resolved config.

    A cell reached from several grids of one file (e.g. the full model in two ablation tables) is one
    cell: ``grids`` lists them all and ``labels`` holds the axis labels of every grid it belongs to.
    """

    index: int
    name: str  # run name, e.g. ``dataset=ml-100k,dim=64,seed=1`` (labels of the first grid that made it)
    labels: dict[str, str]  # axis -> chosen label (value as text, or the bundle's name)
    values: dict[str, Any]  # dotted config key -> value, as applied on top of the base
    config: C.Config
    key: str
    grids: tuple[int, ...] = (0,)


@dataclass
class Sweep:
    """A parsed sweep file plus command-line ``--set`` overrides (applied to every cell)."""

    name: str
    experiment: str
    base: dict[str, Any]
    grids: list[dict[str, Any]]
    exclude: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    path: Path | None = None
    description: str = ""
    _cells: list[Cell] | None = field(default=None, repr=False, compare=False)

    def cells(self) -> list[Cell]:
        """All cells in a stable order (grid order, then product order), excluded ones dropped, one per key."""
        if self._cells is None:
            self._cells = self._expand()
        return self._cells

    def _expand(self) -> list[Cell]:
        cells: dict[str, Cell] = {}
        for g, grid in enumerate(self.grids):
            for labels, values in _product(grid):
                cfg = self._config(values, labels)
                if _excluded(self.exclude, labels, cfg):  # before validation: excludes may drop invalid combos
                    continue
                self._validate(cfg, labels)
                key = C.cell_key(cfg)
                if key in cells:  # the same run serves several grids (or an override collapsed an axis)
                    old = cells[key]
                    if g in old.grids:
                        continue
                    cells[key] = dataclasses.replace(old, labels={**labels, **old.labels}, grids=old.grids + (g,))
                    continue
                cells[key] = Cell(len(cells), _name(labels), labels, values, cfg, key, (g,))
        return list(cells.values())

    def axes(self, grid: int) -> list[str]:
        """The axis names of grid ``grid`` (what a report groups by)."""
        return list(self.grids[grid])

    def _config(self, values: dict[str, Any], labels: dict[str, str]) -> C.Config:
        """base <- grid values <- overrides; errors name the cell."""
        try:
            cfg = C.apply(C.Config(), self.base)
            C.apply(cfg, values)
            C.apply(cfg, dict(C.parse_override(o) for o in self.overrides))
        except C.ConfigError as err:
            raise self._error(labels, err) from None
        cfg.tracking.experiment = self.experiment
        return cfg

    def _validate(self, cfg: C.Config, labels: dict[str, str]) -> None:
        try:
            C.validate(cfg)
        except C.ConfigError as err:
            raise self._error(labels, err) from None

    def _error(self, labels: dict[str, str], err: Exception) -> C.ConfigError:
        where = ",".join(f"{k}={v}" for k, v in labels.items())
        return C.ConfigError(f"{self.path or self.name}: cell [{where}]: {err}")


def _name(labels: dict[str, str]) -> str:
    """``dataset=ml-100k,dim=64,seed=1``: the run name of a cell."""
    return ",".join(f"{_short(axis)}={label}" for axis, label in labels.items()) or "base"


def _short(axis: str) -> str:
    """``model.dim`` -> ``dim``; ``dataset.name`` -> ``dataset``; a bundle axis keeps its name."""
    parts = axis.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _label(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _axis_options(axis: str, spec: Any) -> list[tuple[str, dict[str, Any]]]:
    """A list -> one config key with those values; a mapping -> named bundles of config values."""
    if isinstance(spec, list) and spec:
        return [(_label(v), {axis: v}) for v in spec]
    if isinstance(spec, dict) and spec:
        bad = [k for k, v in spec.items() if not isinstance(v, dict | type(None))]
        if bad:
            raise C.ConfigError(f"grid axis {axis!r}: bundle {bad[0]!r} must map config keys to values")
        return [(str(name), dict(values or {})) for name, values in spec.items()]
    raise C.ConfigError(f"grid axis {axis!r}: expected a non-empty list of values or a mapping of named bundles")


def _product(grid: dict[str, Any]):
    """Yield (labels, values) for every combination of the axes, first axis slowest."""
    axes = [(axis, _axis_options(axis, spec)) for axis, spec in grid.items()]
    for combo in itertools.product(*(opts for _, opts in axes)):
        labels = {axis: label for (axis, _), (label, _) in zip(axes, combo)}
        values: dict[str, Any] = {}
        for _, bundle in combo:
            values.update(bundle)
        yield labels, values


def _excluded(rules: list[dict[str, Any]], labels: dict[str, str], cfg: C.Config) -> bool:
    """A rule drops a cell when every key in it matches the cell (config value, or an axis label)."""
    flat = C.to_dict(cfg, flat=True)

    def hit(key: str, want: Any) -> bool:
        if key in flat:
            return flat[key] == want or _label(flat[key]) == _label(want)
        if key in labels:
            return labels[key] == _label(want)
        raise C.ConfigError(f"exclude key {key!r} is neither a config key nor a grid axis ({', '.join(labels)})")

    return any(all(hit(k, v) for k, v in rule.items()) for rule in rules)


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Parse and validate a sweep file: unknown top-level keys and invalid cells are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise C.ConfigError(f"{path}: unknown sweep key {unknown[0]!r}{C._closest(unknown[0], list(TOP_KEYS))} (valid: {', '.join(TOP_KEYS)})")
    grids = data.get("grid") or {}
    grids = grids if isinstance(grids, list) else [grids]
    name, base = str(data.get("name") or path.stem), data.get("base") or {}
    experiment = data.get("experiment") or (base.get("tracking") or {}).get("experiment") or name
    sweep = Sweep(name=name, experiment=str(experiment), base=base,
                  grids=grids, exclude=list(data.get("exclude") or []), overrides=list(overrides or []), path=path,
                  description=str(data.get("description") or ""))
    if not sweep.cells():
        raise C.ConfigError(f"{path}: the grid has no cells (everything excluded?)")
    return sweep


def select(cells: list[Cell], where: list[str] | None = None) -> list[Cell]:
    """The cells whose axis labels match every ``AXIS=LABEL[,LABEL...]`` filter (all cells without filters)."""
    wanted: dict[str, set[str]] = {}
    for item in where or []:
        axis, sep, labels = item.partition("=")
        if not sep:
            raise C.ConfigError(f"--where {item!r} is not AXIS=LABEL[,LABEL...]")
        wanted[axis] = set(labels.split(","))
    axes = {a for c in cells for a in c.labels}
    names = {**{_short(a): a for a in axes}, **{a: a for a in axes}}  # ``seed`` as in run names, or ``train.seed``
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise C.ConfigError(f"--where axis {unknown[0]!r} is not an axis of this sweep (axes: {', '.join(sorted(axes))})")
    return [c for c in cells if all(c.labels.get(names[a]) in labels for a, labels in wanted.items())]


def check_names(cells: list[Cell]) -> None:
    """Fail early, before any job starts, on dataset or encoder names nobody registered."""
    from harness.data import list_datasets

    datasets = set(list_datasets())
    for cell in cells:
        ds = cell.config.dataset
        if ds.name not in datasets and not ds.data_dir:
            raise C.ConfigError(f"cell {cell.index} ({cell.name}): unknown dataset {ds.name!r}; valid: {', '.join(sorted(datasets))}")
    named = {e for c in cells for e in (c.config.features.text_encoder, c.config.features.image_encoder) if e}
    if not named:
        return
    # importing the registry loads every backend (seconds): only when a cell names an encoder
    from encoders import list_encoders
    from encoders.local import as_local_dir

    known = set(list_encoders())
    for cell in cells:
        for enc in (cell.config.features.text_encoder, cell.config.features.image_encoder):
            if not enc or enc in known:
                continue
            try:  # a local checkpoint folder, named as in `harness encode`: local-dir:/path or a bare path
                if as_local_dir(enc) is not None:
                    continue
            except FileNotFoundError as exc:
                raise C.ConfigError(f"cell {cell.index} ({cell.name}): {exc}") from None
            raise C.ConfigError(f"cell {cell.index} ({cell.name}): unknown encoder {enc!r}{C._closest(enc, sorted(known))}")


# --------------------------------------------------------------------------------------------- MLflow


@dataclass(frozen=True)
class Context:
    """Where a sweep's cells log: created once by :func:`prepare`, handed to tasks through the environment."""

    uri: str
    experiment_id: str
    parent_run_id: str

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.uri, ENV_EXPERIMENT: self.experiment_id, ENV_PARENT: self.parent_run_id}


def store_uri(sweep: Sweep) -> str:
    """The sweep's tracking URI; a relative sqlite path is made absolute so every task opens the same file."""
    from harness.tracking import tracking_uri

    uri = tracking_uri(sweep.cells()[0].config.tracking)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def init_store(uri: str):
    """Open the store from this one process (creates the sqlite schema before any parallel writer)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    client.search_experiments(max_results=1)
    return client


def _experiment(client, name: str) -> str:
    """Get or create (or restore) the experiment; a concurrent creator is tolerated by re-reading."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name)
        except MlflowException:  # another submitter created it between our get and create
            found = client.get_experiment_by_name(name)
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _parent_tags(sweep: Sweep) -> dict[str, str]:
    """How the parent run is found again: role plus a hash of the sweep name and its command-line overrides."""
    import hashlib

    overrides = " ".join(sweep.overrides)
    ident = hashlib.sha256(f"{sweep.name}\0{overrides}".encode()).hexdigest()[:16]
    return {TAG_ROLE: ROLE_SWEEP, TAG_SWEEP: sweep.name, "harness.sweep_id": ident, "harness.sweep_overrides": overrides or "-"}


def _describe(client, run_id: str, sweep: Sweep) -> None:
    """Parent tags a report needs: the axes of each grid and the cell count."""
    from mlflow.entities import RunTag

    tags = {k: v for k, v in sweep_tags(sweep).items() if k.startswith(("harness.axes.", "harness.n_cells"))}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _parent(client, experiment_id: str, sweep: Sweep) -> str:
    """The sweep's parent run (same name and overrides): reused by a rerun, else created."""
    tags = _parent_tags(sweep)
    query = f"tags.`{TAG_ROLE}` = '{ROLE_SWEEP}' and tags.`harness.sweep_id` = '{tags['harness.sweep_id']}'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1, order_by=["attributes.start_time DESC"])
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run_id = client.create_run(experiment_id, tags=tags, run_name=f"sweep:{sweep.name}").info.run_id
    if sweep.path is not None:
        client.log_text(run_id, sweep.path.read_text(), f"sweep/{sweep.path.name}")
    return run_id


def prepare(sweep: Sweep) -> Context:
    """Store schema, experiment and parent run, created once by the submitting process."""
    uri = store_uri(sweep)
    client = init_store(uri)
    experiment_id = _experiment(client, sweep.experiment)
    parent = _parent(client, experiment_id, sweep)
    _describe(client, parent, sweep)
    return Context(uri, experiment_id, parent)


def context_from_env(sweep: Sweep) -> Context:
    """The context a submitter passed down (array task), else a fresh :func:`prepare` (a cell run by hand)."""
    exp, parent = os.environ.get(ENV_EXPERIMENT), os.environ.get(ENV_PARENT)
    if exp and parent:
        return Context(store_uri(sweep), exp, parent)
    return prepare(sweep)


def pending(sweep: Sweep, ctx: Context) -> list[Cell]:
    """Cells without a FINISHED run."""
    from mlflow import MlflowClient

    done = finished_keys(MlflowClient(ctx.uri), ctx.experiment_id)
    return [c for c in sweep.cells() if c.key not in done]


# ------------------------------------------------------------------------------------------- one cell


def cell_tags(sweep: Sweep, cell: Cell) -> dict[str, str]:
    """Tags that identify the cell in MLflow (sweep, axis labels, Slurm ids) on top of the run's own
    (``run_schema.run_tags``: what it computes; the encoder tags and metrics are logged by the run)."""
    tags = {**run_tags(cell.config), TAG_SWEEP: sweep.name, TAG_ROLE: ROLE_CELL, "harness.cell_index": str(cell.index),
            "harness.grids": ",".join(map(str, cell.grids))}
    tags.update({f"harness.axis.{axis}": label for axis, label in cell.labels.items()})
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        if os.environ.get(var):
            tags[f"slurm.{var[6:].lower()}"] = os.environ[var]
    return tags


def _cell_config(cell: Cell, ctx: Context) -> C.Config:
    import copy

    cfg = copy.deepcopy(cell.config)
    t = cfg.tracking
    t.uri, t.experiment_id, t.parent_run_id, t.run_name = ctx.uri, ctx.experiment_id, ctx.parent_run_id, cell.name
    return cfg


class _Terminated(Exception):
    """SIGTERM (Slurm time limit, scancel) turned into an exception so the run is closed as KILLED."""


def _on_sigterm(signum, frame):
    raise _Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def _sigterm_raises():
    """While a cell runs, SIGTERM raises :class:`_Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(run, cfg: C.Config, logger) -> int:
    """``run(cfg, logger)`` (``harness.train.run``) with the MLflow run closed FINISHED, FAILED or KILLED."""
    try:
        metrics = run(cfg, logger)
    except (_Terminated, KeyboardInterrupt):
        logger.finish("KILLED", traceback.format_exc())
        print("cell killed", flush=True)
        return 143
    except Exception:  # noqa: BLE001 - a failing cell is recorded, not raised: the sweep goes on
        logger.finish("FAILED", traceback.format_exc())
        traceback.print_exc()
        return 1
    logger.finish("FINISHED")
    shown = {k: round(v, 4) for k, v in (metrics or {}).items() if k.startswith("test/")}
    print(f"finished: {shown}", flush=True)
    return 0


def run_cell(sweep: Sweep, index: int, ctx: Context | None = None, archive_dir: str | Path | None = None) -> int:
    """Run cell ``index`` as one MLflow child run (or, with ``archive_dir``, as one record in that archive folder,
    no MLflow needed); skip it when its key already FINISHED there. Returns an exit code."""
    cells = sweep.cells()
    if not 0 <= index < len(cells):
        raise IndexError(f"cell index {index} out of range: {sweep.name} has cells 0..{len(cells) - 1}")
    cell = cells[index]
    from harness import train  # the heavy imports happen before the run exists
    from harness.tracking import MLflowLogger

    if archive_dir is not None:
        folder = archive_folder(sweep, archive_dir)
        if cell.key in archived_keys(folder):
            print(f"cell {index} [{cell.name}] key {cell.key} already in {folder}; skipped", flush=True)
            return 0
        print(f"cell {index} [{cell.name}] key {cell.key} -> {folder}", flush=True)
        with _sigterm_raises():
            return _train(train.run, cell.config, archive.ArchiveLogger(folder, cell_tags(sweep, cell), cell.name))
    ctx = ctx or context_from_env(sweep)
    if cell.key in finished_keys(init_store(ctx.uri), ctx.experiment_id):
        print(f"cell {index} [{cell.name}] key {cell.key} already FINISHED; skipped", flush=True)
        return 0
    print(f"cell {index} [{cell.name}] key {cell.key}", flush=True)
    cfg = _cell_config(cell, ctx)
    with _sigterm_raises():
        try:
            tags = cell_tags(sweep, cell)
        except Exception:
            logger = MLflowLogger(cfg.tracking, tags={TAG_KEY: cell.key, TAG_SWEEP: sweep.name, TAG_ROLE: ROLE_CELL})
            logger.finish("FAILED", traceback.format_exc())
            raise
        return _train(train.run, cfg, MLflowLogger(cfg.tracking, tags=tags))


# ------------------------------------------------------------------------------------------- archive


def sweep_tags(sweep: Sweep) -> dict[str, str]:
    """The parent run's tags a report needs: identity, the axes of each grid and the cell count."""
    tags = {**_parent_tags(sweep), **{f"harness.axes.{g}": ",".join(sweep.axes(g)) for g in range(len(sweep.grids))}}
    tags["harness.n_cells"] = str(len(sweep.cells()))
    return tags


def archive_folder(sweep: Sweep, root: str | Path) -> Path:
    """``<root>/<sweep name>/``, with the sweep's description (``sweep.json``) written once."""
    folder = Path(root) / sweep.name
    if not (folder / archive.SWEEP_FILE).is_file():
        archive.write_sweep(folder, sweep.experiment, sweep_tags(sweep), run_name=f"sweep:{sweep.name}")
    return folder


def archived_keys(folder: Path) -> set[str]:
    """Cell keys with a FINISHED record in the archive folder (what a rerun into it skips)."""
    records = (archive.load_record(f) for f in folder.glob("*.json") if f.name != archive.SWEEP_FILE)
    return {r["cell_key"] for r in records if r.get("status") == "FINISHED"}


def run_archive(sweep: Sweep, root: str | Path, jobs: int = 1, logs: str | Path | None = None,
                where: list[str] | None = None) -> int:
    """Every cell not yet in the archive, on this machine, ``jobs`` processes at a time, without MLflow
    (e.g. a GPU box that has none); ``harness archive import`` later brings the records into MLflow."""
    from tqdm import tqdm

    folder = archive_folder(sweep, root)
    chosen = select(sweep.cells(), where)
    done = archived_keys(folder)  # read the records once, not once per cell
    todo = [c for c in chosen if c.key not in done]
    print(f"{sweep.name}: {len(chosen)} cells, {len(todo)} to run into {folder}, {jobs} at a time", flush=True)
    pre_encode(todo)
    env, logs = task_env(None, max(1, (os.cpu_count() or 1) // jobs)), log_dir(sweep, logs)
    extra = ["--archive", str(Path(root).resolve())]
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(total=len(todo), desc="cells") as bar:
        futures = {pool.submit(_run_one, sweep, cell, env, logs, jobs == 1, extra): cell for cell in todo}
        for future in as_completed(futures):
            if future.result() != 0:
                cell = futures[future]
                bar.write(f"cell {cell.index} [{cell.name}] failed: {logs / f'cell-{cell.index:04d}.log'}")
            bar.update()
    return 0 if {c.key for c in chosen} <= archived_keys(folder) else 1


# ------------------------------------------------------------------------------ fan-out: local / Slurm


def pre_encode(cells: list[Cell]) -> None:
    """Encode every (dataset, encoder, modality) the cells need, once, before they fan out."""
    needs = sorted({(c.config.dataset.name, c.config.dataset.data_dir or "", enc, mod, c.config.features.cache_dir or "")
                    for c in cells
                    for mod, enc in (("text", c.config.features.text_encoder), ("image", c.config.features.image_encoder))
                    if enc})
    if not needs:
        return
    from tqdm import tqdm

    from harness.data import load_dataset
    from harness.encoding import ensure_features

    for name, data_dir, encoder, modality, cache in tqdm(needs, desc="features"):
        ensure_features(load_dataset(name, data_dir or None), encoder, modality, cache or None)


def task_env(ctx: Context | None, threads: int | None = None) -> dict[str, str]:
    """Environment for cell processes: the context, one shared absolute cache, no inherited Slurm job ids."""
    from harness.data.paths import cache_root as default_cache_root

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env.update(ctx.env() if ctx is not None else {})
    env["HARNESS_CACHE_DIR"] = str(default_cache_root().resolve())
    if threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return env


def cell_argv(sweep: Sweep) -> list[str]:
    """Arguments that make a child process see the same sweep (file + overrides)."""
    assert sweep.path is not None, "a sweep run in other processes needs its file"
    return [str(sweep.path.resolve())] + [a for o in sweep.overrides for a in ("--set", o)]


def log_dir(sweep: Sweep, logs: str | Path | None = None) -> Path:
    path = Path(logs) if logs else Path("results") / "sweeps" / sweep.name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _run_one(sweep: Sweep, cell: Cell, env: dict[str, str], logs: Path, echo: bool = False, extra: list[str] = ()) -> int:
    """Run one cell in its own process, its output in the cell's log (and on the terminal with ``echo``)."""
    cmd = [sys.executable, "-m", "harness.sweep", *cell_argv(sweep), "--index", str(cell.index), *extra]
    with open(logs / f"cell-{cell.index:04d}.log", "wb", buffering=0) as out:  # unbuffered: `tail -f` follows it
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # read1: progress bars arrive as they draw
            out.write(chunk)
            if echo:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
        return proc.wait()


def run_local(sweep: Sweep, jobs: int = 1, logs: str | Path | None = None, where: list[str] | None = None) -> int:
    """Every unfinished cell on this machine, ``jobs`` processes at a time; 0 when all cells FINISHED."""
    from tqdm import tqdm

    ctx = prepare(sweep)
    chosen = {c.key for c in select(sweep.cells(), where)}
    todo = [c for c in pending(sweep, ctx) if c.key in chosen]
    print(f"{sweep.name}: {len(chosen)} cells, {len(todo)} to run, {jobs} at a time", flush=True)
    pre_encode(todo)
    env, logs = task_env(ctx, max(1, (os.cpu_count() or 1) // jobs)), log_dir(sweep, logs)
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(total=len(todo), desc="cells") as bar:
        futures = {pool.submit(_run_one, sweep, cell, env, logs, jobs == 1): cell for cell in todo}
        for future in as_completed(futures):
            cell = futures[future]
            if future.result() != 0:
                bar.write(f"cell {cell.index} [{cell.name}] failed: {logs / f'cell-{cell.index:04d}.log'}")
            bar.update()
    finalize(sweep, ctx)
    return 0 if chosen <= finished_keys(init_store(ctx.uri), ctx.experiment_id) else 1


def slurm_script(name: str) -> Path:
    """``slurm/<name>`` of this checkout (or ``$HARNESS_SLURM_DIR``)."""
    root = os.environ.get("HARNESS_SLURM_DIR")
    path = Path(root) / name if root else REPO / "slurm" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set HARNESS_SLURM_DIR to the folder holding {name}")
    return path


def array_spec(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> ``0-2,5,7-8`` (sbatch --array syntax)."""
    parts, start = [], None
    for i, idx in enumerate(indices):
        start = idx if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != idx + 1:
            parts.append(str(idx) if start == idx else f"{start}-{idx}")
            start = None
    return ",".join(parts)


def sbatch(args: list[str], env: dict[str, str]) -> str:
    """Run ``sbatch --parsable``; return the job id."""
    proc = subprocess.run(["sbatch", "--parsable", *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


def submit(sweep: Sweep, sbatch_args: list[str] | None = None, max_parallel: int | None = None,
           logs: str | Path | None = None) -> list[str]:
    """Create experiment + parent once, then one array job of the unfinished cells and a finalize job after it.

    Returns the submitted job ids (empty when every cell already FINISHED).
    """
    from mlflow import MlflowClient

    ctx = prepare(sweep)
    todo = pending(sweep, ctx)
    if not todo:
        print(f"{sweep.name}: all {len(sweep.cells())} cells FINISHED in MLflow; nothing to submit", flush=True)
        finalize(sweep, ctx)
        return []
    pre_encode(todo)
    env, logs, extra = task_env(ctx), log_dir(sweep, logs), list(sbatch_args or [])
    array = array_spec([c.index for c in todo]) + (f"%{max_parallel}" if max_parallel else "")
    job = sbatch([f"--array={array}", f"--job-name={sweep.name}", f"--output={logs}/%x-%A_%a.out", *extra,
                  str(slurm_script("cell.sh")), *cell_argv(sweep)], env)
    fin = sbatch([f"--dependency=afterany:{job}", f"--job-name={sweep.name}-finalize", f"--output={logs}/%x-%j.out",
                  str(slurm_script("finalize.sh")), *cell_argv(sweep)], env)
    client = MlflowClient(ctx.uri)
    client.set_tag(ctx.parent_run_id, "slurm.array_job_id", job)
    client.set_tag(ctx.parent_run_id, "slurm.finalize_job_id", fin)
    print(f"{sweep.name}: submitted array job {job} --array={array} ({len(todo)} of {len(sweep.cells())} cells), "
          f"finalize job {fin}; logs in {logs}", flush=True)
    return [job, fin]


def finalize(sweep: Sweep, ctx: Context) -> dict[str, int]:
    """Close the parent run: FINISHED when every cell has a FINISHED run, else FAILED; log a cells table."""
    import collections
    import csv
    import io

    from mlflow import MlflowClient

    client = MlflowClient(ctx.uri)
    best: dict[str, Any] = {}
    for run in search_all(client, ctx.experiment_id, f"tags.`{TAG_ROLE}` = '{ROLE_CELL}'"):
        key, old = run.data.tags.get(TAG_KEY), best.get(run.data.tags.get(TAG_KEY))
        if old is None or (run.info.status == "FINISHED", run.info.start_time) > (old.info.status == "FINISHED", old.info.start_time):
            best[key] = run
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["index", "key", "name", "status", "run_id"])
    counts: collections.Counter = collections.Counter()
    for cell in sweep.cells():
        run = best.get(cell.key)
        status = run.info.status if run else "MISSING"
        counts[status] += 1
        writer.writerow([cell.index, cell.key, cell.name, status, run.info.run_id if run else ""])
    client.log_text(ctx.parent_run_id, buf.getvalue(), "sweep/cells.csv")
    client.set_tag(ctx.parent_run_id, "harness.cells", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    client.set_terminated(ctx.parent_run_id, "FINISHED" if counts["FINISHED"] == len(sweep.cells()) else "FAILED")
    print(f"{sweep.name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), flush=True)
    return dict(counts)


# ------------------------------------------------------------------------------------------------ CLI


def list_cells(sweep: Sweep, where: list[str] | None = None) -> str:
    """One line per cell: index, key, run name, overrides (the ``key=value`` pairs ``harness train`` takes)."""
    cells = select(sweep.cells(), where)
    lines = [f"# {sweep.name}: {len(cells)} cells -> experiment {sweep.experiment!r}"]
    for cell in cells:
        values = " ".join(f"{k}={_label(v)}" for k, v in cell.values.items())
        lines.append(f"{cell.index:4d}  {cell.key}  {cell.name}  {values}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="harness sweep", description="Run a sweep grid (sweeps/*.yaml) locally or on Slurm.")
    p.add_argument("file", help="sweep YAML: base config + grid")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every cell (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print the cells (index, key, overrides)")
    mode.add_argument("--index", type=int, help="run one cell (default: $SLURM_ARRAY_TASK_ID)")
    mode.add_argument("--local", action="store_true", help="run every unfinished cell on this machine")
    mode.add_argument("--submit", action="store_true", help="create experiment + parent run, sbatch the array")
    mode.add_argument("--finalize", action="store_true", help="close the parent run, log the cells table")
    p.add_argument("-j", "--jobs", type=int, default=1, help="--local: processes at once")
    p.add_argument("--max-parallel", type=int, help="--submit: array tasks at once (%%N)")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="--submit: extra sbatch argument for the array, e.g. --sbatch-arg=--gres=gpu:1 "
                        "(also from $HARNESS_SBATCH_ARGS)")
    p.add_argument("--logs", help="folder for per-cell logs (default results/sweeps/<name>)")
    p.add_argument("--where", action="append", default=[], metavar="AXIS=LABEL[,LABEL]",
                   help="--local / --list: only the cells with these axis labels, e.g. --where dataset=ml-1m --where seed=1,2")
    p.add_argument("--archive", metavar="DIR", help="--local / --index: record cells in the archive DIR/<sweep name>/ "
                                                    "instead of MLflow (see harness archive import)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import shlex

    args = parse_args(argv)
    sweep = load_sweep(args.file, args.overrides)
    if args.index is None and not (args.list or args.local or args.submit or args.finalize):
        if "SLURM_ARRAY_TASK_ID" not in os.environ:
            print(list_cells(sweep))
            return 0
        args.index = int(os.environ["SLURM_ARRAY_TASK_ID"])
    if args.list:
        print(list_cells(sweep, args.where))
        return 0
    if args.index is not None:
        return run_cell(sweep, args.index, archive_dir=args.archive)
    if args.finalize:
        counts = finalize(sweep, context_from_env(sweep))
        return 0 if counts.get("FINISHED", 0) == len(sweep.cells()) else 1
    check_names(sweep.cells())
    if args.local and args.archive:
        return run_archive(sweep, args.archive, max(1, args.jobs), args.logs, args.where)
    if args.local:
        return run_local(sweep, max(1, args.jobs), args.logs, args.where)
    extra = shlex.split(os.environ.get("HARNESS_SBATCH_ARGS", "")) + args.sbatch_arg
    submit(sweep, extra, args.max_parallel, args.logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
