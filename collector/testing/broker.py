"""A private Mosquitto on a free port, for tests that stop and restart the broker.

Never touch the shared broker other tests use: start your own with
``PrivateMosquitto(tmp_dir).start()``, ``stop()`` it (SIGTERM, so it saves its
persistence file with the queued QoS 1 messages of persistent sessions), and
``start()`` it again on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from kinetic.mqtt import MqttSettings, broker_reachable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMosquitto:
    def __init__(self, workdir: str | Path, *, port: int | None = None, binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.binary = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.workdir}/\nautosave_interval 0\n"
            f"log_dest file {self.workdir}/mosquitto.log\nmax_queued_messages 0\n"
            # started as root, mosquitto would switch to the 'mosquitto' user, which cannot write the
            # persistence file or the log into a test's private temporary folder: persistent sessions
            # would then silently not survive a restart. A throw-away test broker keeps the caller's user.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen | None = None

    @property
    def settings(self) -> MqttSettings:
        return MqttSettings(port=self.port, keepalive_s=5)

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if broker_reachable(self.settings, timeout_s=0.2):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.workdir}/mosquitto.log")
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing is acknowledged (a hung broker or a dead link)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
