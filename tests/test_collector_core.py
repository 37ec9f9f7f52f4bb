"""Outbox durability and budget, counter unwrapping, clock alignment."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from collector.clock import ClockAligner, CounterUnwrapper
from storage.outbox import Outbox, OutboxFullError


def test_outbox_survives_reopen_and_keeps_order(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    ids = [box.put(f"t/{i}", bytes([i]) * 10) for i in range(5)]
    box.ack(ids[1])
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    items = again.peek()
    assert [i.topic for i in items] == ["t/0", "t/2", "t/3", "t/4"]
    assert len(again) == 4 and again.size_bytes == sum(len(i.topic) + len(i.payload) for i in items)
    assert [i.topic for i in again.peek(after_id=items[1].id)] == ["t/3", "t/4"]


def test_outbox_budget_refuses_and_warns(tmp_path, caplog) -> None:
    box = Outbox(tmp_path / "o.sqlite", budget_bytes=1000)
    caplog.set_level(logging.WARNING)
    for _ in range(9):
        box.put("t", b"x" * 99)
    assert "90% full" in caplog.text or "80% full" in caplog.text
    with pytest.raises(OutboxFullError, match="full"):
        box.put("t", b"x" * 200)
    assert box.refused_n == 1 and len(box) == 9  # nothing already stored was dropped


@pytest.mark.parametrize("bits", [8, 16])
def test_counter_unwrapper_handles_rollover_and_late_packets(bits: int) -> None:
    modulus = 1 << bits
    true = np.arange(0, 5 * modulus, 7)
    u = CounterUnwrapper(bits)
    out = [u.unwrap(int(v % modulus)) for v in true]
    assert out == true.tolist()
    # a late packet from just before the last one maps into the right lap, and does not move `last`
    assert u.unwrap(int((true[-1] - 3) % modulus)) == true[-1] - 3
    assert u.last == true[-1]


EPOCH_US = 1_700_000_000_000_000


def test_clock_alignment_left_right_within_10_ms() -> None:
    """Two insoles whose clocks run 80 ppm fast and 60 ppm slow, with their own epochs, and BLE
    latency jitter (7.5 ms floor + exponential queueing): mapped onto one time base within 10 ms."""
    rng = np.random.default_rng(3)
    true_us = np.arange(0, 600_000_000, 50_000).astype(np.float64)  # 10 min, a notification every 50 ms
    errors = []
    for drift_ppm, device_epoch_us in ((80.0, 5_000_000), (-60.0, 123_456_789)):
        device_us = (true_us * (1 + drift_ppm * 1e-6) + device_epoch_us).astype(np.int64)
        arrival_us = (EPOCH_US + true_us + 7_500 + rng.exponential(15_000, true_us.size)).astype(np.int64)
        aligner = ClockAligner()
        mapped = []
        for d, a in zip(device_us, arrival_us, strict=True):
            aligner.observe(int(d), int(a))
            mapped.append(aligner.to_collector_us(int(d)))
        err_us = np.array(mapped) - (EPOCH_US + true_us)
        errors.append(err_us[true_us.size // 10 :])  # after the first minute of learning
        # the estimated drift is the device's, with the opposite sign (collector minus device)
        assert aligner.drift_ppm == pytest.approx(-drift_ppm, abs=3)
    left_minus_right_ms = (errors[0] - errors[1]) / 1000
    assert np.max(np.abs(left_minus_right_ms)) < 10, f"up to {np.max(np.abs(left_minus_right_ms)):.1f} ms apart"
    # each is late by about the latency floor only
    assert 0 <= np.median(errors[0]) / 1000 < 12
