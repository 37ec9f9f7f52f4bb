"""docker-compose.yml, checked by a real compose implementation (``compose config``) and in parts run.

The compose command is ``$KINETIC_TEST_COMPOSE`` if set, else ``docker compose`` (the v2 plugin) when
it works, else Debian's ``docker-compose`` (scripts/run.sh installs it for the tests). No engine is
needed: ``config`` only reads, interpolates and validates. Then the health checks themselves are
run: the broker's against a Mosquitto with the shipped secure configuration, the dashboard's
against the app, the processing service's against a live TCP connection.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from dashboards.app import create_app
from kinetic import healthcheck
from storage.store import SQLiteStore
from tests.fixtures.dashboard import ServerThread
from tests.test_broker_security import DEPLOY, make_certs, start_secure_mosquitto

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"mosquitto", "postgres", "processing", "dashboard"}
NATS_NODES = {"nats-1", "nats-2", "nats-3"}  # profile "cluster" (docs/scale.md)
SECRETS = {"POSTGRES_PASSWORD": "pg-secret-1", "KINETIC_DASHBOARD_SECRET": "d" * 40,
           "KINETIC_PROCESSING_MQTT_PASSWORD": "proc-secret-1", "KINETIC_DASHBOARD_MQTT_PASSWORD": "dash-secret-1"}


def compose_command() -> list[str]:
    if os.environ.get("KINETIC_TEST_COMPOSE"):
        return shlex.split(os.environ["KINETIC_TEST_COMPOSE"])
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], check=False,
                                                   capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("no compose implementation: install the docker compose plugin or Debian's docker-compose "
                "(bash scripts/run.sh test does) — not skipping")


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess:
    # a clean environment: variables of the caller's shell would win over the env file
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([*compose_command(), "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"),
                           *extra, "config"], check=False, capture_output=True, text=True, env=env, cwd=env_file.parent,
                          timeout=60)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**SECRETS, "KINETIC_SECRETS_DIR": "/srv/kc-secrets"}.items()))
    done = compose_config(env_file)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_services_health_checks_and_restart_policies(config):
    services = config["services"]
    assert set(services) - NATS_NODES == SERVICES  # compose v1 lists the profiles' services too, v2 does not
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3, name
        assert service["logging"]["options"]["max-size"] == "10m", name  # logs rotate
    for name in ("processing", "dashboard"):
        deps = services[name]["depends_on"]
        assert {d: v["condition"] for d, v in deps.items()} == {"mosquitto": "service_healthy",
                                                                "postgres": "service_healthy"}
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"]


def test_clustered_broker_profile(tmp_path):
    """``--profile cluster``: three NATS nodes routed to each other, each with its own configuration and volume,
    the MQTT listener replicating sessions and messages on all three; the services stay on Mosquitto unless
    KINETIC_MQTT_URL names the nodes (and the worker holds a session per subscription when told, as NATS needs)."""
    env_file = tmp_path / "compose.env"
    url = "mqtts://nats-1:8883,mqtts://nats-2:8883,mqtts://nats-3:8883"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**SECRETS, "KINETIC_SECRETS_DIR": "/srv/kc-secrets",
                                                           "KINETIC_MQTT_URL": url,
                                                           "KINETIC_MQTT_SESSION_PER_SUBSCRIPTION": "1"}.items()))
    done = compose_config(env_file, "--profile", "cluster")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) >= NATS_NODES
    for name in NATS_NODES:
        conf = ROOT / "deploy" / "nats" / f"{name}.conf"
        assert mounts(services[name])["/etc/nats/nats.conf"] == (str(conf), True)
        text = conf.read_text()
        others = sorted(NATS_NODES - {name})
        assert all(f"nats-route://{o}:6222" in text for o in others) and f"server_name: kc-{name}" in text
        assert "stream_replicas: 3" in text and "consumer_replicas: 3" in text and "tls {" in text
        assert services[name]["healthcheck"]["retries"] >= 3
    for name in ("processing", "dashboard"):
        assert services[name]["environment"]["KINETIC_MQTT_URL"] == url
    assert services["processing"]["environment"]["KINETIC_MQTT_SESSION_PER_SUBSCRIPTION"] == "1"
    if shutil.which("nats-server") or os.access("/usr/sbin/nats-server", os.X_OK):  # the node files parse
        conf = (ROOT / "deploy" / "nats" / "nats-1.conf").read_text()
        (tmp_path / "users.conf").write_text("authorization { users = [{user: a, password: b}] }\n")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
                        "server.crt", "-days", "1", "-subj", "/CN=nats-1"], cwd=tmp_path, check=True, capture_output=True)
        shutil.copy(tmp_path / "server.crt", tmp_path / "ca.crt")
        (tmp_path / "n.conf").write_text(conf.replace("/etc/nats/certs/", f"{tmp_path}/")
                                         .replace("store_dir: /data", f"store_dir: {tmp_path}/js"))
        checked = subprocess.run([shutil.which("nats-server") or "/usr/sbin/nats-server", "-c", str(tmp_path / "n.conf"),
                                  "-t"], capture_output=True, text=True, check=False, timeout=30)
        assert checked.returncode == 0, checked.stderr


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only), whichever syntax the implementation prints."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = (parts[0], parts[2:] == ["ro"])
        else:
            out[v["target"]] = (v.get("source"), bool(v.get("read_only")))
    return out


def test_broker_runs_the_shipped_secure_configuration(config):
    broker = config["services"]["mosquitto"]
    m = mounts(broker)
    assert m["/mosquitto/config/mosquitto.conf"] == (str(DEPLOY / "mosquitto" / "mosquitto-secure.conf"), True)
    assert m["/mosquitto/config/acl"] == (str(DEPLOY / "mosquitto" / "acl"), True)
    assert m["/mosquitto/config/passwd"] == ("/srv/kc-secrets/broker/passwd", True)
    for f in ("ca.crt", "server.crt", "server.key"):
        assert m[f"/mosquitto/config/certs/{f}"] == (f"/srv/kc-secrets/broker/certs/{f}", True)
    assert not any("ca.key" in str(src) for src, _ in m.values())  # the CA's key stays offline
    # the paths the secure configuration reads are exactly the ones mounted
    conf = (DEPLOY / "mosquitto" / "mosquitto-secure.conf").read_text().split()
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile"):
        assert conf[conf.index(key) + 1] in m
    ports = [str(p.get("target") if isinstance(p, dict) else p) for p in broker["ports"]]
    assert ports and all("8883" in p for p in ports) and not any("1883" in p for p in ports)


def test_services_use_postgresql_tls_and_secrets_from_the_env_file(config):
    services = config["services"]
    processing, dashboard = services["processing"], services["dashboard"]
    cmd = processing["command"]
    assert cmd[:2] == ["kinetic", "process"] and cmd[cmd.index("--db") + 1].startswith("postgresql://kinetic@postgres")
    assert dashboard["command"][:2] == ["kinetic", "dashboard"] and "--https-only-cookies" in dashboard["command"]
    assert dashboard["environment"]["KINETIC_DATABASE_URL"].startswith("postgresql://kinetic@postgres")
    for svc, user, secret in ((processing, "kinetic-processing", "proc-secret-1"),
                              (dashboard, "kinetic-dashboard", "dash-secret-1")):
        env = svc["environment"]
        assert env["KINETIC_MQTT_URL"] == "mqtts://mosquitto:8883" and env["KINETIC_MQTT_USERNAME"] == user
        assert env["KINETIC_MQTT_PASSWORD"] == secret and env["PGPASSWORD"] == "pg-secret-1"
        assert mounts(svc)["/etc/kinetic/ca.crt"] == ("/srv/kc-secrets/broker/certs/ca.crt", True)
    assert dashboard["environment"]["KINETIC_DASHBOARD_SECRET"] == "d" * 40
    # researcher downloads read the raw archive processing writes: the same volume, read-only for the dashboard
    archive = processing["command"][processing["command"].index("--archive") + 1]
    assert dashboard["command"][dashboard["command"].index("--archive") + 1] == archive
    assert mounts(dashboard)["/data"][1] is True and mounts(processing)["/data"][1] is False
    assert mounts(dashboard)["/data"][0] == mounts(processing)["/data"][0]
    assert "ports" not in services["postgres"]  # the database is not published
    published = [p if isinstance(p, str) else f"{p.get('host_ip', '')}:{p['published']}" for p in dashboard["ports"]]
    assert all(p.startswith("127.0.0.1:") for p in published)


def test_no_default_secrets(tmp_path):
    # the shipped example has placeholders only: compose refuses to run with it as it is
    example_text = (ROOT / ".env.example").read_text()
    for var in SECRETS:  # every secret is named in the example, with an empty value
        assert f"\n{var}=\n" in example_text
    example = tmp_path / "example.env"
    example.write_text(example_text)
    done = compose_config(example)
    assert done.returncode != 0 and any(var in done.stderr for var in SECRETS)
    # and each secret on its own is required: left out, compose names it and stops
    for missing in SECRETS:
        env_file = tmp_path / f"without-{missing}.env"
        env_file.write_text("KINETIC_SECRETS_DIR=/srv/kc-secrets\n" +
                            "".join(f"{k}={v}\n" for k, v in SECRETS.items() if k != missing))
        done = compose_config(env_file)
        assert done.returncode != 0 and missing in done.stderr, (missing, done.stderr)


def test_the_broker_health_check_against_the_secure_broker(config, tmp_path):
    test = config["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    make_certs(tmp_path)
    (tmp_path / "passwd").touch()
    (tmp_path / "acl").write_text((DEPLOY / "mosquitto" / "acl").read_text())
    proc, tls = start_secure_mosquitto(tmp_path)
    # the command as the container runs it ($$ is compose's escape for $), with this broker's port and CA
    shell = test[1].replace("$$", "$").replace("-p 8883", f"-p {tls.port}")
    shell = shell.replace("/mosquitto/config/certs/ca.crt", str(tmp_path / "certs" / "ca.crt"))
    try:
        assert subprocess.run(["sh", "-c", shell], check=False, timeout=20).returncode == 0
    finally:
        proc.terminate()
        proc.wait(5)
    assert subprocess.run(["sh", "-c", shell], check=False, timeout=20).returncode != 0  # broker down: unhealthy


def test_the_dashboard_and_processing_health_checks(config, tmp_path):
    test = config["services"]["dashboard"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "kinetic.healthcheck"]
    store = SQLiteStore(tmp_path / "kinetic.sqlite")
    with ServerThread(create_app(store, secret="h" * 40)) as server:
        assert healthcheck.main([*test[4:-1], test[-1].replace("127.0.0.1:8080", server.url.split("//")[1])]) == 0
    assert healthcheck.main([*test[4:-1], test[-1].replace("8080", str(server.port))]) == 1  # stopped
    store.close()

    test = config["services"]["processing"]["healthcheck"]["test"]
    assert test[4:] == ["connected", "8883"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert healthcheck.main(["connected", str(port)]) == 1  # nothing connected yet
        with socket.create_connection(("127.0.0.1", port)):
            assert port in healthcheck.established_remote_ports()
            assert healthcheck.main(["connected", str(port)]) == 0


def test_the_image_has_every_package_the_services_import():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert {pattern.rstrip("*") for pattern in include} <= copied
