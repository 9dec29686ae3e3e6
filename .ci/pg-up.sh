#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on a spare loopback port for the tests and exports
# TRADELOOP_TEST_PG_URL. Source it: `source .ci/pg-up.sh` (it installs PostgreSQL from Debian's
# packages if it is missing, and stops the server when the sourcing shell exits).
# Without it the PostgreSQL tests skip with a message, so plain `cargo test` still works.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ -z "$(pg_bin)" ]; then
    echo "== installing PostgreSQL (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(pg_bin)"
if [ -z "$PG_BIN" ]; then
    echo "PostgreSQL is not installed and could not be installed" >&2
    return 1 2>/dev/null || exit 1
fi

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PG_DIR="$(mktemp -d /tmp/tradeloop-pg.XXXXXX)"
[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)"
as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres tradeloop_test
export TRADELOOP_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/tradeloop_test"
echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (data in $PG_DIR)"

pg_down() {
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
trap pg_down EXIT
