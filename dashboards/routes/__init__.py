"""The dashboards' routes, one router per role or resource; :func:`dashboards.app.create_app` includes them.

``auth`` (sign-in and out, whoami, API docs), ``therapist`` (pages and API), ``live`` (the live view),
``patient``, ``researcher``, ``admin``. Access rules are the dependencies of :mod:`dashboards.deps`.
"""
