"""Small helpers shared by the broker tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from processing.service import ProcessingService


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@contextmanager
def running_service(service: ProcessingService, mqtt_settings, *, name: str = "test") -> Iterator[ProcessingService]:
    """Run ``service`` against the broker in a thread (non-persistent session) until the block ends."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=service.run, args=(mqtt_settings,), daemon=True,
        kwargs=dict(client_id=f"{name}-{uuid.uuid4().hex[:8]}", stop=stop, ready=ready, persistent=False),
    )
    thread.start()
    if not ready.wait(10):
        raise AssertionError("the processing service did not subscribe within 10 s")
    try:
        yield service
    finally:
        stop.set()
        thread.join(10)
