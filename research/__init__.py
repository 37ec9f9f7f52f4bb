"""Researcher exports: de-identified raw sessions, stride tables and weekly summaries.

* ``kinetic export`` (:mod:`research.cli`) writes Parquet, CSV or BIDS-Motion;
* :func:`load_session` / :func:`load_strides` read any of them back into pandas;
* :mod:`research.deid` says what de-identification removes and shifts.

See docs/export.md.
"""

from research.api import load_session, load_strides, load_table, sessions

__all__ = ["load_session", "load_strides", "load_table", "sessions"]
