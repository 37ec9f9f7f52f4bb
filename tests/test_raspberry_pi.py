"""The gateway's systemd unit (deploy/raspberry-pi/): parsed, checked against what provisioning writes,
verified by systemd itself (``systemd-analyze verify``) and scored (``systemd-analyze security``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kinetic.cli import build_parser
from kinetic.provision import GATEWAY_DIR, GATEWAY_OUTBOX

PI = Path(__file__).resolve().parents[1] / "deploy" / "raspberry-pi"
UNIT = PI / "kinetic-collector.service"
#: the most `systemd-analyze security` may rate the unit (0 = locked down ... 10 = unprotected)
MAX_EXPOSURE = 2.5


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value in order (systemd allows a key more than once)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing (apt-get install systemd; bash scripts/run.sh test does) "
                    "— not skipping")
    return tool


def runnable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this machine's `kinetic` (verify checks that it exists)."""
    kinetic = Path(sys.executable).with_name("kinetic")
    assert kinetic.exists()
    copy = tmp_path / UNIT.name
    copy.write_text((text or UNIT.read_text()).replace("/opt/kinetic/venv/bin/kinetic", str(kinetic)))
    return copy


def test_unit_settings():
    unit = parse_unit(UNIT.read_text())
    s, u = unit["Service"], unit["Unit"]
    assert s["Restart"] == ["on-failure"] and s["RestartSec"] == ["10s"] and u["StartLimitIntervalSec"] == ["0"]
    assert s["User"] == ["kinetic"] and "bluetooth" in s["SupplementaryGroups"][0].split()
    assert {"bluetooth.target", "bluetooth.service", "network-online.target"} <= set(u["After"][0].split())
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"] and s["CapabilityBoundingSet"] == [""]
    # BlueZ is reached over the D-Bus system bus: AF_UNIX must stay allowed, the network must not be private
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0].split() and "PrivateNetwork" not in s
    assert s["KillSignal"] == ["SIGTERM"] and int(s["TimeoutStopSec"][0].rstrip("s")) > 10  # the outbox drains 10 s
    # the paths provisioning writes (kinetic provision patient) are the ones the unit reads
    assert s["EnvironmentFile"] == [str(GATEWAY_DIR / "collector.env")]
    assert f"KINETIC_COLLECTOR_CONFIG={GATEWAY_DIR / 'collector.toml'}" in s["Environment"][0].split()
    assert s["StateDirectory"] == ["kinetic"] and GATEWAY_OUTBOX.parent == Path("/var/lib") / "kinetic"
    # ExecStart is a valid `kinetic collect` command line
    argv = s["ExecStart"][0].split()
    assert argv[0].endswith("/kinetic")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "collect" and args.status_interval_s == 10
    sysusers = (PI / "kinetic-collector.sysusers").read_text()
    assert re.search(r"^u kinetic ", sysusers, re.M) and re.search(r"^m kinetic bluetooth$", sysusers, re.M)
    journald = parse_unit((PI / "journald-kinetic.conf").read_text())["Journal"]
    assert journald["SystemMaxUse"] == ["200M"] and journald["Storage"] == ["persistent"]


def test_systemd_analyze_verify(tmp_path):
    tool = systemd_analyze()
    done = subprocess.run([tool, "verify", str(runnable_copy(tmp_path))], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    # and the check does catch mistakes
    broken = UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes")
    (tmp_path / "b").mkdir()
    done = subprocess.run([tool, "verify", str(runnable_copy(tmp_path / "b", broken))], check=False,
                          capture_output=True, text=True, timeout=60)
    assert "restart specifier" in done.stderr


def test_systemd_analyze_security(tmp_path):
    tool = systemd_analyze()
    done = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(runnable_copy(tmp_path))],
                          check=False, capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert level, done.stdout + done.stderr
    assert float(level.group(1)) <= MAX_EXPOSURE
