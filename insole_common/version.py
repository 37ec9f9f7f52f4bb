"""The version of Kinetic Chain: read from the installed package's metadata, which pyproject.toml's
``[project] version`` writes, so the number is written in one place only."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "kinetic-chain"

__version__: str | None
try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed (pip install -e .)
    __version__ = None


def software_version() -> str:
    """``kinetic-chain 0.1.0``, as export manifests and ``kinetic --version`` show it."""
    return f"{DISTRIBUTION} {__version__}" if __version__ else f"{DISTRIBUTION} (source tree)"
