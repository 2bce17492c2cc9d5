#!/usr/bin/env bash
# Start the local services the integration tests use, when they are installed
# but down: RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432).
# A service that is not installed is left alone: its tests skip with a reason.
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

if ! port_open 5672; then
    if command -v rabbitmq-server >/dev/null 2>&1; then
        echo "ensure-services: starting RabbitMQ"
        rabbitmq-server -detached >/dev/null 2>&1 || true
        # the AMQP port opens about a second after 'rabbitmq-diagnostics ping' succeeds
        wait_port 5672 60 || echo "ensure-services: RabbitMQ did not open 5672; its tests will skip"
    else
        echo "ensure-services: rabbitmq-server not installed; RabbitMQ tests will skip"
    fi
fi

if ! port_open 5432; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "ensure-services: starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
        wait_port 5432 30 || echo "ensure-services: PostgreSQL did not open 5432; its tests will skip"
    else
        echo "ensure-services: PostgreSQL not installed; its tests will skip"
    fi
fi
exit 0
