"""The ``harness`` console command: each sub-command is a module's ``main(argv)``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("harness.data.cli", "dataset statistics and checks"),
    "encoders": ("encoders.cli", "list registered encoders"),
    "encode": ("harness.encode", "encode an item catalogue into the feature cache"),
    "encode-node": ("harness.encoding.node_launch", "one node's torchrun launcher of a multi-node encode (slurm/encode.sh)"),
    "features": ("harness.features.cli", "export cached features: parquet, hf, recbole, mmrec"),
    "train": ("harness.train", "train one recommender (optionally with KDSR)"),
    "sweep": ("harness.sweep", "run a sweep grid locally or as a Slurm array"),
    "report": ("harness.report", "figures and tables from MLflow or archives"),
    "archive": ("harness.archive", "results that travel: export / import / list JSON archives"),
    "demo": ("harness.demo", "the main job on the embedded default"),
}


def usage() -> str:
    lines = ["usage: harness COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<12}{help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"harness: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
