"""Dataset statistics after filtering (what the paper's Table 1 reports)."""

from __future__ import annotations

from harness.data.tables import SequenceDataset


def dataset_stats(dataset: SequenceDataset) -> dict[str, float | int]:
    """users, items, interactions, avg_len, sparsity (1 - interactions / (users * items)), min/max length."""
    lengths = dataset.lengths()
    users, items, interactions = len(lengths), dataset.num_items, int(lengths.sum())
    return {
        "users": users,
        "items": items,
        "interactions": interactions,
        "avg_len": round(interactions / users, 4) if users else 0.0,
        "sparsity": round(1.0 - interactions / (users * items), 6) if users and items else 1.0,
        "min_len": int(lengths.min()) if users else 0,
        "max_len": int(lengths.max()) if users else 0,
    }


def format_stats(name: str, stats: dict[str, float | int]) -> str:
    """One human-readable block."""
    return "\n".join(
        [
            f"dataset       {name}",
            f"users         {stats['users']:,}",
            f"items         {stats['items']:,}",
            f"interactions  {stats['interactions']:,}",
            f"avg_len       {stats['avg_len']:.2f}  (min {stats['min_len']}, max {stats['max_len']})",
            f"sparsity      {100 * stats['sparsity']:.4f}%",
        ]
    )
