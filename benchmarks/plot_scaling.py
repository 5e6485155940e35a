"""Plots of the cost curves from encode_scaling.py / recsys_scaling.py JSON lines -> docs/img/.

    python benchmarks/plot_scaling.py --encode docs/scaling/encode.jsonl docs/scaling/encode-before.jsonl \\
        --recsys docs/scaling/recsys.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def rows(*paths: Path) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip() and "error" not in line]


def plot_encode(lines: list[dict], out: Path) -> None:
    """Time per item and peak RSS per catalogue size; one series per ``code`` (before / after a change)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    series: dict[str, list[dict]] = {}
    for r in lines:
        series.setdefault(r.get("code", "measured"), []).append(r)
    for label, group in series.items():
        timed = [r for r in group if r["encode_s_per_item"]]
        ax1.plot([r["items_catalogue"] for r in timed], [r["encode_s_per_item"] * 1e3 for r in timed], "o-", label=label)
        ax2.plot([r["items_catalogue"] for r in group], [r["peak_rss_mb"] for r in group], "o-", label=label)
        for r in group:
            if not r["encode_s_per_item"]:
                ax1.axvline(r["items_catalogue"], ls=":", c="gray")
                ax1.annotate(f"{r['items_catalogue']:,}: no chunk done\nin {r['wall_s']:.0f} s ({label})",
                             (r["items_catalogue"], 0.5), fontsize=7, ha="right")
    ax1.set(xscale="log", yscale="log", xlabel="catalogue items", ylabel="encode ms / item",
            title="tiny-bert, CPU: time per item")
    ax2.set(xscale="log", xlabel="catalogue items", ylabel="MB", title="process peak RSS")
    ax2.set_ylim(bottom=0)
    ax1.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_recsys(lines: list[dict], out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    labels = [f"{r['items'] // 1000}k x {r['interactions'] / 1e6:g}M" for r in lines]
    x = range(len(lines))
    for stage in ("load_build", "load_cached", "kcore5", "split", "store", "samples"):
        axes[0].plot(x, [r["stages"][stage]["cpu_s"] / r["interactions"] * 1e6 for r in lines], "o-", label=stage)
    axes[0].set(ylabel="CPU s per 1M interactions", title="data stages (flat = linear)")
    axes[1].plot(x, [r["train_cpu_s_per_target"] / r["items"] * 1e9 for r in lines], "o-", label="train (measured batches)")
    axes[1].plot(x, [r["eval_cpu_s_per_target"] / r["items"] * 1e9 for r in lines], "o-", label="full-ranking eval")
    axes[1].set(ylabel="CPU ns per target per item", title="train / eval (full softmax: O(items) per target)")
    axes[2].plot(x, [r["peak_rss_mb"] for r in lines], "o-")
    axes[2].set(ylabel="MB", title="peak RSS of the cell")
    for ax in axes:
        ax.set_xticks(list(x), labels, rotation=30, fontsize=8)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--encode", type=Path, nargs="+", help="encode_scaling.py JSON lines (several files: one series per code)")
    p.add_argument("--recsys", type=Path)
    a = p.parse_args(argv)
    IMG.mkdir(parents=True, exist_ok=True)
    if a.encode:
        plot_encode(rows(*a.encode), IMG / "scaling-encode.png")
    if a.recsys:
        plot_recsys(rows(a.recsys), IMG / "scaling-recsys.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
