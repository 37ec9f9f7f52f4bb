"""The collector's counters in the Prometheus text format (:mod:`storage.health`; ``kinetic collect --metrics-port``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.health import Metric, by_reason, counter, gauge

if TYPE_CHECKING:
    from collector.service import Collector


def collector_metrics(c: Collector) -> list[Metric]:
    p = "kinetic_collector_"
    return [
        Metric(p + "frames_total", "counter", "frames decoded, per side",
               [({"side": side}, st.frames_n) for side, st in c._sides.items()]),  # noqa: SLF001 - its own parts
        counter(p + "published_total", "messages published", c.publisher.published_n),
        counter(p + "acknowledged_total", "messages the broker acknowledged", c.publisher.acked_n),
        gauge(p + "outbox_depth", "messages not yet acknowledged by the broker", len(c.outbox)),
        gauge(p + "outbox_fill_fraction", "outbox bytes over its budget", c.outbox.fill_fraction),
        gauge(p + "storage_full", "1 while the disk refuses writes (data kept in memory)", int(c.outbox.storage_full)),
        counter(p + "dropped_frames_total", "frames dropped (outbox or disk full: the drop policy)", c.dropped_frames_n),
        counter(p + "dropped_messages_total", "messages dropped (outbox or disk full)", c.lost_outbox_full_n),
        by_reason(p + "warnings_total", "warnings raised (rate-limited in the log), by reason", dict(c.warnings.counts)),
        gauge(p + "broker_connected", "1 while connected to the broker", int(c.client.is_connected())),
    ]
