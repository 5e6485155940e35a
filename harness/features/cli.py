"""``harness features export``: cached features to Parquet, HF datasets, RecBole or MMRec files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.data import load_dataset
from harness.features.export import FORMATS, export_features
from harness.features.layout import MODALITIES, feature_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness features", description="The feature cache: export.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write cached features for another framework")
    export.add_argument("--dataset", required=True)
    export.add_argument("--encoder", required=True, help="as given to `harness encode`")
    export.add_argument("--to", required=True, choices=FORMATS)
    export.add_argument("--modality", choices=MODALITIES, help="default: the one cached for this encoder")
    export.add_argument("--out", help="output folder (default exports/<dataset>)")
    export.add_argument("--data-dir", help="dataset root (default $HARNESS_DATA_DIR)")
    export.add_argument("--cache-dir", help="cache root (default $HARNESS_CACHE_DIR)")
    return parser


def cached_modality(dataset: str, encoder: str, cache_dir: str | None) -> str:
    """The one modality with a complete cache for (dataset, encoder); else ask for --modality."""
    found = [m for m in MODALITIES if (feature_dir(dataset, encoder, m, cache_dir) / "manifest.json").is_file()]
    if len(found) != 1:
        what = "no cached features" if not found else f"caches for {', '.join(found)}"
        raise ValueError(f"{what} for {dataset} / {encoder}: pass --modality "
                         f"(encode first with: harness encode --dataset {dataset} --encoder {encoder})")
    return found[0]


def cmd_export(args: argparse.Namespace) -> int:
    modality = args.modality or cached_modality(args.dataset, args.encoder, args.cache_dir)
    dataset = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out or Path("exports") / args.dataset)
    print(export_features(dataset, args.encoder, modality, args.to, out, args.cache_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``harness features``; a missing or foreign cache prints one line and returns 1."""
    args = _parser().parse_args(argv)
    try:
        return {"export": cmd_export}[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        print(f"harness features: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
