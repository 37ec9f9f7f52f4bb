"""The gateway's disk fills up under a running ``kinetic collect`` (a real, small tmpfs: SQLite really answers
SQLITE_FULL and the journal ENOSPC): the collector keeps reading and sending, reports ``storage_full`` in its
status and on its health endpoint, never exits, resumes by itself when space is freed, and delivers every frame
(issue 21, item 4)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_collector_broker import Recorder, seq_multiset, wait_for
from tests.test_collector_restart import sent_frames, start_collect

pytestmark = pytest.mark.services
DEVICE = {"L": "kc16-f04b43000001", "R": "kc16-f04b43000002"}


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()


def test_a_full_disk_does_not_stop_the_collector(tmp_path, small_disk, mqtt_settings, patient_id) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder(mqtt_settings, patient_id, suffixes=("raw/+", "status/collector"), client_id=f"rec-{patient_id}")
    proc = start_collect(tmp_path, patient_id, mqtt_settings.url, "run", outbox=small_disk / "outbox.sqlite",
                         extra=["--metrics-port", str(port)])
    try:
        assert wait_for(lambda: len(rec.batches("L")) >= 4, 30), (tmp_path / "run.err").read_text()[-2000:]
        filler = fill(small_disk)
        assert wait_for(lambda: "kinetic_collector_storage_full 1.0" in metrics(port), 15), metrics(port)
        assert wait_for(lambda: any(m.get("storage_full") for m in rec.json("status/collector")), 5)
        before = len(rec.batches("L"))
        time.sleep(6.0)  # longer than a checkpoint interval: the collector retries, fails, and goes on
        assert proc.poll() is None, (tmp_path / "run.err").read_text()[-2000:]
        assert len(rec.batches("L")) >= before + 10  # still reading and sending (2 batches/s per insole)
        filler.unlink()
        assert wait_for(lambda: "kinetic_collector_storage_full 0.0" in metrics(port), 15), metrics(port)
        assert wait_for(lambda: rec.json("status/collector")[-1].get("storage_full") is False, 5)
        assert "kinetic_collector_dropped_frames_total 0.0" in metrics(port)
        stopping_us = time.time_ns() // 1000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        # (what was still on its way through the emulated link at SIGTERM is not read any more)
        sent = sent_frames(tmp_path / "sent.jsonl", stopping_us - 500_000)

        def missing() -> dict[str, int]:
            return {s: len(sent[s] - set(seq_multiset([b for b in rec.batches(s) if b[0].device_id == DEVICE[s]])))
                    for s in "LR"}

        ok = wait_for(lambda: missing() == {"L": 0, "R": 0}, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
        rec.close()
    err = (tmp_path / "run.err").read_text()
    assert ok, (missing(), err[-2000:])
    assert "cannot write to" in err and "writable again" in err
