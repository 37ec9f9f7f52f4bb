"""Dashboards: the web app behind ``kinetic dashboard`` (docs/dashboards.md).

Therapists see their patients' weekly trends against baseline, flags with evidence,
notes, session pressure maps and gait lines, and a live view; patients see plainly whether
their insoles record and how their walking goes; researchers list and download
de-identified sessions (through :mod:`research`, as ``kinetic export`` writes them). It reads the processing
service's storage (``storage.store``) and hears collector status and live frames from the broker (``dashboards.live``).

Modules: ``app`` (create_app: state, error pages, headers), ``deps`` (who is asking, access rules),
``routes`` (one router per role or resource), ``auth`` (accounts, Argon2 passwords), ``data`` (page bodies from
:mod:`storage.dashboard`), ``plots`` (heat maps, gait lines), ``live`` (MQTT status and frames),
``signin_limit``, ``cli``.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    # lazy: importing dashboards.schema or dashboards.data (as `kinetic export` does) must not load the web stack
    if name == "create_app":
        from dashboards.app import create_app  # noqa: PLC0415 - lazy on purpose: the web stack, see above

        return create_app
    raise AttributeError(f"module 'dashboards' has no attribute {name!r}")
