"""The `saeflow` command: one subcommand per module, registered below.

Each subcommand module exposes `add_arguments(parser)` and `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "view": ("saeflow.viewer.app", "serve the feature viewer on 127.0.0.1"),
    "audit": (
        "saeflow.workflow.audit",
        "trace a result back to corpora and config; flag stale",
    ),
    "check-cluster": (
        "saeflow.workflow.cluster",
        "check a SLURM profile against sinfo",
    ),
    "export": (
        "saeflow.sae.export",
        "convert an SAE to or from SAELens' and sparsify's layouts",
    ),
    "make-tiny-model": (
        "saeflow.models.tiny",
        "write the tiny random BERT of tests/configs/tiny.yaml (trying the workflow)",
    ),
    "add-digests": (
        "saeflow.workflow.digest",
        "digest SAE folders made before digests existed (no retraining)",
    ),
    "export-features": (
        "saeflow.viewer.neuronpedia",
        "write Neuronpedia-style JSON per feature of a finished run",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saeflow", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `saeflow` console script."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
