"""``kinetic`` — the command line of Kinetic Chain.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``;
this module only lists them. ``kinetic SUBCOMMAND --help`` documents each one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: every subcommand module; each defines register(subparsers)
SUBCOMMAND_MODULES = (
    "simulator.cli",
    "processing.analyze_cli",
    "processing.service_cli",
    "processing.detection_cli",
    "collector.cli",
    "dashboards.cli",
    "kinetic.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinetic",
        description="Kinetic Chain: pressure-sensing insoles for gait retraining at home.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
