#!/usr/bin/env bash
# Everything a fresh machine needs for mbuskit and its tests: a virtual environment with the
# package and its dev/bench extras, node-mbus (libmbus) for the interop tests and the scan
# benchmark, Debian's chromium for the browser test, and the PostgreSQL / Mosquitto services
# the integration tests use (started if they are down). Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
log "installing mbuskit with extras"
.venv/bin/python -m pip install -q -e '.[all]'

# Only the tests and benchmarks need what follows; `SETUP_MINIMAL=1` skips it.
if [ "${SETUP_MINIMAL:-0}" = "1" ]; then
    exit 0
fi

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "no apt-get: cannot install $*"; return 0
    fi
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium (browser test)"
    apt_install chromium || log "chromium install failed"
fi
if ! command -v node >/dev/null 2>&1; then
    log "installing nodejs and npm (libmbus interop)"
    apt_install nodejs npm || log "nodejs install failed"
fi
if [ -x .ci/install-node-mbus.sh ] || [ -f .ci/install-node-mbus.sh ]; then
    log "installing node-mbus"
    bash .ci/install-node-mbus.sh || log "node-mbus install failed"
fi

# Services the integration tests use; this kind of machine normally starts them already.
if command -v pg_ctlcluster >/dev/null 2>&1 && ! (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! command -v mosquitto >/dev/null 2>&1; then
    apt_install mosquitto || log "mosquitto install failed"
fi
if command -v mosquitto >/dev/null 2>&1 && ! (echo > /dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    log "starting Mosquitto"
    mosquitto -d -c /etc/mosquitto/mosquitto.conf || mosquitto -d || true
fi
if ! command -v psql >/dev/null 2>&1 || ! (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        log "installing PostgreSQL"
        apt_install postgresql || log "postgresql install failed"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
fi
log "done"
