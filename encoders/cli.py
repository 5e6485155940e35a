"""``harness encoders list [--json] [--modality text|image] [PATTERN]``: the registered encoders."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from encoders import get_info, list_encoders
from encoders.base import MODALITIES, EncoderInfo

COLUMNS = ("name", "modality", "backend", "params", "dim", "pooling", "strategy")


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _table(infos: list[EncoderInfo]) -> str:
    rows = [COLUMNS] + [
        (i.name, i.modality, i.backend, _human(i.params), str(i.dim), f"{i.pooling}@{i.layer}", i.strategy) for i in infos
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness encoders", description="registered encoders and their metadata")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list registered encoders")
    ls.add_argument("pattern", nargs="?", default="*", help="glob over NAME or MODALITY/NAME, e.g. 'text/*'")
    ls.add_argument("--json", action="store_true", help="one JSON object per encoder (a JSON list)")
    ls.add_argument("--modality", choices=MODALITIES, help="only text or only image encoders")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = list_encoders(args.pattern)
    if args.modality:
        names = [n for n in names if n in set(list_encoders(f"{args.modality}/*"))]
    infos = [get_info(n) for n in names]
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
    else:
        print(_table(infos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
