"""Dashboards: the web app behind ``kinetic dashboard`` (docs/dashboards.md).

Therapists see their patients' weekly trends against baseline, flags with evidence,
notes, session pressure maps and gait lines, and a live view; patients see plainly whether
their insoles record and how their walking goes; researchers list and download
de-identified sessions (through :mod:`research`, as ``kinetic export`` writes them). It reads the processing service's storage (``storage.store``)
and hears collector status and live frames from the broker (``dashboards.live``).

Modules: ``app`` (routes and access rules), ``auth`` (accounts, Argon2 passwords),
``data`` (queries), ``plots`` (heat maps, gait lines), ``live`` (MQTT status and frames), ``schema`` (the dashboards' own tables),
``testing`` (fixture data), ``cli``.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    # lazy: importing dashboards.schema or dashboards.data (as `kinetic export` does) must not load the web stack
    if name == "create_app":
        from dashboards.app import create_app

        return create_app
    raise AttributeError(f"module 'dashboards' has no attribute {name!r}")
