#!/usr/bin/env bash
# Install (Debian's packages) and start the local services the integration tests,
# the demo and the benchmarks use: RabbitMQ (127.0.0.1:5672) and PostgreSQL
# (127.0.0.1:5432, user postgres with trust on loopback only). Waits for their
# ports, not for a ping: RabbitMQ's AMQP port opens about a second after
# `rabbitmq-diagnostics ping` succeeds.
#
# In CI (CI=true) a service that cannot be installed or started is an error (exit 1):
# a run must not pass by testing less. Elsewhere it is a warning, and the tests that
# need it skip with a reason.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port, seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_open "$1" && return 0
        sleep 0.1
    done
    return 1
}

failures=0
problem() {
    echo "ensure-services: $*" >&2
    failures=$((failures + 1))
}

apt_updated=
apt_install() {  # package...
    if [ "$(id -u)" != 0 ]; then
        problem "not root: cannot install $*"
        return 1
    fi
    if [ -z "$apt_updated" ]; then
        echo "ensure-services: apt-get update" >&2
        apt-get update -qq >/dev/null 2>&1 || true
        apt_updated=1
    fi
    echo "ensure-services: installing $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# --- RabbitMQ -----------------------------------------------------------------
if ! port_open 5672; then
    command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
    if command -v rabbitmq-server >/dev/null 2>&1; then
        echo "ensure-services: starting RabbitMQ" >&2
        rabbitmq-server -detached >/dev/null 2>&1 || true
        wait_port 5672 90 || problem "RabbitMQ did not open 127.0.0.1:5672"
    else
        problem "rabbitmq-server could not be installed"
    fi
fi

# --- PostgreSQL ---------------------------------------------------------------
pg_trust_loopback() {  # the tests connect as postgres over TCP without a password
    local hba=$1 line="host all postgres 127.0.0.1/32 trust  # stx-intel-gpu tests"
    grep -qF "$line" "$hba" && return 1
    { echo "$line"; cat "$hba"; } > "$hba.new" && cat "$hba.new" > "$hba" && rm -f "$hba.new"
    return 0
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    changed=
    if [ -w "$hba" ] && pg_trust_loopback "$hba"; then changed=1; fi
    if ! port_open 5432; then
        echo "ensure-services: starting PostgreSQL $version" >&2
        pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
        wait_port 5432 60 || problem "PostgreSQL did not open 127.0.0.1:5432"
    elif [ -n "$changed" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
    fi
else
    problem "PostgreSQL could not be installed"
fi

if [ "$failures" -gt 0 ]; then
    if [ "${CI:-}" = true ]; then
        echo "ensure-services: $failures service(s) missing; in CI that is an error" >&2
        exit 1
    fi
    echo "ensure-services: the tests that need the missing service(s) will skip" >&2
fi
exit 0
