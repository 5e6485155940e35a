"""``harness data``: list datasets, print statistics after filtering, fetch official files."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from harness.data.errors import DataError
from harness.data.fetch import fetch_dataset
from harness.data.images import IMAGE_DIR, STATUS_FILE, download_images
from harness.data.loading import DatasetNoteWarning, load_dataset, resolve_spec
from harness.data.folder import folder_spec
from harness.data.paths import data_root, dataset_folder
from harness.data.registry import get_spec, list_datasets
from harness.data.stats import dataset_stats, format_stats


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness data", description="Datasets: list, statistics, fetch, images.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered datasets and whether their files are present")
    stats = sub.add_parser("stats", help="users/items/interactions/avg_len/sparsity after 5-core filtering")
    fetch = sub.add_parser("fetch", help="download the official files (needs internet)")
    images = sub.add_parser("images", help="download the items' image URLs into the dataset folder")
    images.add_argument("--workers", type=int, default=16, help="parallel downloads (default 16)")
    images.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (default 10)")
    images.add_argument("--retries", type=int, default=2, help="retries of a transient failure (default 2)")
    for p in (stats, fetch, images):
        p.add_argument("--dataset", required=True, help="a registered name (see `harness data list`)")
        p.add_argument(
            "--data-dir", default=None, help="folder holding one sub-folder per dataset (default $HARNESS_DATA_DIR)"
        )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    fetch.add_argument("--force", action="store_true", help="download again even when the files are present")
    list_ = sub.choices["list"]
    list_.add_argument("--data-dir", default=None)
    return parser


def _status(name: str, data_dir: str | None) -> str:
    folder = dataset_folder(name, data_dir)
    try:
        layout, _ = get_spec(name).find_layout(folder)
    except DataError:
        return "missing"
    return f"present ({layout.name})"


def folder_datasets(data_dir: str | None) -> list[tuple[str, str]]:
    """(name, status) of each unregistered sub-folder of the data root that loads as a folder dataset."""
    root, found = data_root(data_dir), []
    registered = set(list_datasets())
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in registered) if root.is_dir() else []:
        try:
            spec = folder_spec(folder.name, folder)
        except DataError as e:  # a broken dataset.yaml is listed with its reason, not skipped
            found.append((folder.name, f"unreadable: {e}"))
            continue
        if spec is not None:
            found.append((folder.name, f"present ({spec.layouts[0].name})"))
    return found


def cmd_list(args: argparse.Namespace) -> int:
    for name in list_datasets():
        spec = get_spec(name)
        paper = "paper: {:,} / {:,} / {:,}".format(*spec.paper_stats) if spec.paper_stats else "not in the paper"
        print(f"{name:<16}{_status(name, args.data_dir):<28}{paper:<36}{spec.description}")
    for name, status in folder_datasets(args.data_dir):
        print(f"{name:<16}{status:<28}{'folder dataset':<36}files in {dataset_folder(name, args.data_dir)}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetNoteWarning)
        stats = dataset_stats(load_dataset(args.dataset, args.data_dir))
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    print(json.dumps(stats) if args.json else format_stats(args.dataset, stats))
    paper = resolve_spec(args.dataset, args.data_dir)[0].paper_stats
    if paper and not args.json:
        same = paper == (stats["users"], stats["items"], stats["interactions"])
        print("paper Table 1 {:,} / {:,} / {:,}: {}".format(*paper, "exact match" if same else "DIFFERS"))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    for path in fetch_dataset(args.dataset, args.data_dir, force=args.force):
        print(path)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    items = load_dataset(args.dataset, args.data_dir, resolve_images=False).items
    folder = dataset_folder(args.dataset, args.data_dir)
    report = download_images(
        folder, items.raw_ids, items.images, workers=args.workers, timeout=args.timeout, retries=args.retries
    )
    print(f"{report.wanted} items with an image URL: {report.present} already here, {report.fetched} fetched, "
          f"{len(report.failed)} failed (per item: {folder / IMAGE_DIR / STATUS_FILE})")
    for item, reason in list(report.failed.items())[:5]:
        print(f"  {item}: {reason}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harness data``; data errors print one line and return 1."""
    args = _parser().parse_args(argv)
    try:
        return {"list": cmd_list, "stats": cmd_stats, "fetch": cmd_fetch, "images": cmd_images}[args.command](args)
    except DataError as e:
        print(f"harness data: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
