"""Where a batch's teacher signals come from: computed on the fly, or gathered from N x N tables.

Measured on ML-1M (docs/KDSR.md): for the sampled 11-position grid the on-the-fly path costs
~0.3% of a SASRec step and needs no N^2 memory; for every pair of a 200-item window it is ~20x
slower than gathering from tables and comparable to the step itself. ``auto`` therefore uses
tables for ``pairs=all`` when they fit ``TABLE_BUDGET_BYTES`` (fp16 score + uint8 code per pair),
and the on-the-fly path otherwise.
"""

from __future__ import annotations

SIGNALS = ("auto", "onthefly", "table")
TABLE_BUDGET_BYTES = 1 << 30  # N <= ~18.9k items


def table_bytes(num_items: int) -> int:
    """Memory of the fp16 score and uint8 code tables for ``num_items`` items."""
    return 3 * num_items * num_items


def use_tables(signals: str, pairs: str, num_items: int) -> bool:
    """Whether KDSR should precompute N x N tables for this setting."""
    if signals not in SIGNALS:
        raise ValueError(f"kdsr.signals={signals!r} is not one of {', '.join(SIGNALS)}")
    if signals == "auto":
        return pairs == "all" and table_bytes(num_items) <= TABLE_BUDGET_BYTES
    return signals == "table"
