"""``kinetic`` — the command line of Kinetic Chain.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``;
this module only lists them. ``kinetic SUBCOMMAND --help`` documents each one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from insole_common.errors import InsoleError
from kinetic import __version__

#: every subcommand -> the module that defines it (each module defines register(subparsers));
#: running one command imports only its module, so e.g. ``kinetic export`` does not load the web stack
SUBCOMMAND_MODULES = {
    "simulate": "simulator.cli",
    "analyze": "processing.analyze_cli",
    "process": "processing.service_cli",
    "validate-detection": "simulator.validate_cli",
    "import": "processing.import_cli",
    "flags": "processing.import_cli",
    "calibrate": "processing.import_cli",
    "scan": "collector.cli",
    "pair": "collector.cli",
    "collect": "collector.cli",
    "dashboard": "dashboards.cli",
    "provision": "kinetic.provision",
    "export": "research.cli",
    "demo": "kinetic.demo",
}


#: reStructuredText markup of the modules' docstrings, which several commands show as their help
_RST_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|obj|exc):`~?([^`]+)`")
_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_BLOCK = re.compile(r"(?<=\w)::$", re.MULTILINE)


def plain_text(text: str) -> str:
    """Help text without reStructuredText markup: ````x```` and ``:mod:`x``` become ``x``, ``Examples::`` ``Examples:``."""
    return _RST_BLOCK.sub(":", _RST_LITERAL.sub(r"\1", _RST_ROLE.sub(r"\1", text)))


class PlainHelpParser(argparse.ArgumentParser):
    """Prints every ``--help`` and usage as plain text; subcommands' parsers are of this class too
    (``add_subparsers`` makes its parsers of the parent's class)."""

    def format_help(self) -> str:
        return plain_text(super().format_help())

    def format_usage(self) -> str:
        return plain_text(super().format_usage())


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``command`` given) one with only that command's module registered."""
    parser = PlainHelpParser(
        prog="kinetic",
        description="Kinetic Chain: pressure-sensing insoles for gait retraining at home.",
    )
    parser.add_argument("--version", action="version", version=f"kinetic (kinetic-chain) {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [SUBCOMMAND_MODULES[command]] if command in SUBCOMMAND_MODULES else list(dict.fromkeys(SUBCOMMAND_MODULES.values()))
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built yet
                continue
            raise
        module.register(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
    except InsoleError as exc:  # bad input, configuration or an unreachable service: what was wrong, no traceback
        if args.verbose:
            raise
        print(f"kinetic {_command_of(argv) or ''}: {exc}".replace("  ", " "), file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
