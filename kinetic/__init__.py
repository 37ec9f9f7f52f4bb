"""The ``kinetic`` command line: one entry point for every part of Kinetic Chain."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: the installed package's version (pyproject.toml is its one source)
    __version__ = version("kinetic-chain")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+source"
