"""Real-data layer: dataset registry, loaders, 5-core filtering, item tables and splits."""

from harness.data import amazon as _amazon  # noqa: F401  (registers the Amazon datasets)
from harness.data import movielens as _movielens  # noqa: F401  (registers the MovieLens datasets)
from harness.data import synthetic as _synthetic  # noqa: F401  (registers the synthetic cost-curve dataset)
from harness.data.errors import ChecksumError, DataError, DataFormatError, MissingDataError, UnknownDatasetError
from harness.data.fetch import fetch_dataset
from harness.data.loading import DatasetNoteWarning, load_dataset
from harness.data.registry import DatasetSpec, Layout, Source, get_spec, list_datasets, register_dataset
from harness.data.split import Split, compute_split, eval_targets, history_matrix, make_split, train_sequences
from harness.data.stats import dataset_stats
from harness.data.tables import ItemTable, SequenceDataset

__all__ = [
    "ChecksumError",
    "DataError",
    "DataFormatError",
    "DatasetNoteWarning",
    "DatasetSpec",
    "ItemTable",
    "Layout",
    "MissingDataError",
    "SequenceDataset",
    "Source",
    "Split",
    "UnknownDatasetError",
    "compute_split",
    "dataset_stats",
    "eval_targets",
    "fetch_dataset",
    "get_spec",
    "history_matrix",
    "list_datasets",
    "load_dataset",
    "make_split",
    "register_dataset",
    "train_sequences",
]
