#!/usr/bin/env bash
# The two commands of the README:
#   bash scripts/run.sh demo   -> virtual environment + dependencies, then `kinetic demo`
#   bash scripts/run.sh test   -> the same, plus the static checks (import layers, ruff, mypy), Mosquitto, PostgreSQL, headless Chromium, compose, systemd-analyze, nats-server
#                                 (installed with apt-get when absent; the services started when
#                                 down), then the whole test suite
# Extra arguments go to `kinetic demo` or to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.installed-from
CONSTRAINTS=constraints.txt  # the exact versions the suite passes with
MQTT_HOST=127.0.0.1
MQTT_PORT=1883
PG_HOST=127.0.0.1
PG_PORT=5432

say() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

apt_install() {
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" "$2" && return 0; sleep 0.5; done
  return 1
}

find_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

ensure_venv() {
  local py
  py=$(find_python) || { apt_install python3 python3-venv; py=$(find_python); } || {
    say "Python >= 3.11 is required"; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; rm -rf "$VENV"; "$py" -m venv "$VENV"; }
  fi
  # (re)install when pyproject.toml or the constraints differ from those of the last install
  local want
  want=$(cat pyproject.toml "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    say "installing Kinetic Chain and its dependencies into $VENV (versions from $CONSTRAINTS)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e '.[test]' -c "$CONSTRAINTS"
    echo "$want" > "$STAMP"
  fi
}

ensure_mosquitto() {
  if port_open "$MQTT_HOST" "$MQTT_PORT"; then return 0; fi
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto
  say "starting Mosquitto"
  as_root "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -d -c /etc/mosquitto/mosquitto.conf
  wait_port "$MQTT_HOST" "$MQTT_PORT" || { say "Mosquitto did not come up on $MQTT_HOST:$MQTT_PORT"; exit 1; }
}

ensure_postgres() {
  if port_open "$PG_HOST" "$PG_PORT"; then return 0; fi
  local fresh=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fresh=1; fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ "$fresh" -eq 1 ]; then
    # a throw-away local test server: trust connections from this machine only
    as_root sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port "$PG_HOST" "$PG_PORT" || { say "PostgreSQL did not come up on $PG_HOST:$PG_PORT"; exit 1; }
}

ensure_chromium() {
  # the dashboard tests drive Debian's headless Chromium through its chromedriver
  # and poppler's pdftotext reads back the digest printed to PDF
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v pdftotext >/dev/null; then return 0; fi
  apt_install chromium chromium-driver poppler-utils
}

ensure_deploy_tools() {
  # tests/test_compose.py validates docker-compose.yml with a real compose implementation (the docker
  # compose plugin when present, else Debian's docker-compose); tests/test_raspberry_pi.py runs
  # systemd-analyze verify on the collector's unit
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || apt_install docker-compose
  command -v systemd-analyze >/dev/null || apt_install systemd
  # tests/test_nats_cluster.py starts its own three-node NATS cluster (JetStream, MQTT listener)
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    ensure_venv
    exec "$VENV/bin/kinetic" demo "$@"
    ;;
  test)
    ensure_venv
    ensure_mosquitto
    ensure_postgres
    ensure_chromium
    ensure_deploy_tools
    export KINETIC_MQTT_URL=${KINETIC_MQTT_URL:-mqtt://$MQTT_HOST:$MQTT_PORT}
    export KINETIC_TEST_PG_DSN=${KINETIC_TEST_PG_DSN:-postgresql://postgres@$PG_HOST:$PG_PORT/postgres}
    say "static checks: import layers (lint-imports)"
    "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
    say "static checks: lint (ruff check)"
    "$VENV/bin/ruff" check --quiet --output-format concise .
    say "static checks: types (mypy)"
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
