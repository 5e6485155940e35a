"""Sweep files and their grids: parse, expand into cells, select, check names.

A sweep file (``sweeps/*.yaml``) holds a ``base`` config (the keys of :mod:`harness.config`) and a
``grid``; every combination of grid values is one *cell*. A cell is identified by
``harness.config.cell_key`` (a hash of what it computes).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import config as C
from harness.data import list_datasets

TOP_KEYS = ("name", "experiment", "description", "base", "grid", "exclude")


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
    datasets = set(list_datasets())
    for cell in cells:
        ds = cell.config.dataset
        if ds.name not in datasets and not ds.data_dir:
            raise C.ConfigError(f"cell {cell.index} ({cell.name}): unknown dataset {ds.name!r}; valid: {', '.join(sorted(datasets))}")
    named = {e for c in cells for e in (c.config.features.text_encoder, c.config.features.image_encoder) if e}
    if not named:
        return
    # imported here: the encoder registry loads every backend (~14 s measured), needed only when a cell names one
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
