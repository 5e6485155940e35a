"""Paper figures and tables from an MLflow experiment: ``harness report figure4|table2|ablation|forgetting``.

Everything is read back from MLflow (``mlflow.search_runs``), never from local result files: the
newest FINISHED run of every cell key (tag ``harness.cell_key``) of the experiment, with the tags the
sweep runner wrote (dataset, dim, seed, modality, encoder parameter count, encode seconds, the axis
labels of each grid). Outputs are written to ``--out`` and logged as artifacts of the sweep's parent
run (or of a ``report:<kind>`` run when the experiment has no sweep parent). ``--archive DIR [DIR ...]``
reads archives (:mod:`harness.archive`: the same DataFrame, histories and rank counts) instead, without
MLflow; nothing is logged then.

- ``figure4``: encoder parameter count (log axis) vs test HR@20 and MRR@20, one line per embedding
  dim, one panel per dataset x modality (ID-only runs drawn as a dashed baseline), plus a cost
  (encode device-seconds) vs gain (HR@20 over the ID-only baseline) plot.
- ``table2`` / ``ablation``: one table per grid of the sweep, rows = the grid's axes other than
  seed and dataset, columns = dataset x metric, cells = mean +- sample std over seeds (markdown + CSV);
  plus ``<kind>-significance.md/.csv``: every row vs the best non-KDSR row of its backbone and dataset,
  effect, 95% CI and p-values over test targets (rank counts, :mod:`harness.stats`) and over seeds,
  Holm-corrected across the table's rows.
- ``forgetting``: the modality-forgetting curves (paper Figure 1, right): per-epoch ``monitor/*``
  Pearson correlations, mean +- std over seeds, a line per row label, a panel per dataset x metric.

Modules: ``sources`` (MLflow reads and the artifact upload), ``columns`` (the runs table by run-schema name),
``tables``, ``significance``, ``figures``, ``forgetting``, ``cli``.
"""

from harness.report.cli import KINDS, build, main
from harness.report.columns import (
    FIGURE_METRICS,
    NOT_ROW_AXES,
    TABLE_METRICS,
    backbone,
    fmt,
    grid_axes,
    in_grid,
    in_sweep_order,
    is_kdsr,
    method,
    metric,
    param,
    row_labels,
    seed_of,
    summarize,
    tag,
    valid_key,
)
from harness.report.figures import build_figure4, encoder_points
from harness.report.forgetting import build_forgetting, forgetting_curves
from harness.report.significance import significance, write_significance
from harness.report.sources import MlflowSource, cell_runs, log_outputs, parent_run
from harness.report.tables import build_tables, grid_table, to_markdown
from harness.run_schema import mlflow_key

__all__ = [
    "FIGURE_METRICS", "KINDS", "NOT_ROW_AXES", "TABLE_METRICS", "MlflowSource", "backbone", "build", "build_figure4",
    "build_forgetting", "build_tables", "cell_runs", "encoder_points", "fmt", "forgetting_curves", "grid_axes",
    "grid_table", "in_grid", "in_sweep_order", "is_kdsr", "log_outputs", "main", "method", "metric", "mlflow_key",
    "param", "parent_run", "row_labels", "seed_of", "significance", "summarize", "tag", "to_markdown", "valid_key",
    "write_significance",
]
