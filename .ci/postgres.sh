# A throwaway PostgreSQL server for the store tests, sourced by .ci/run (and usable by hand:
# `source .ci/postgres.sh && start_postgres`, later `stop_postgres`). It runs as an unprivileged
# user on a local port with its data in a temporary folder, and exports FACELAB_TEST_POSTGRES,
# the URL the tests connect to.

PG_USER=${PG_USER:-facelab_ci}

# The first local port from 55432 that nothing listens on.
free_port() {
    local port=55432
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
    local bin
    bin=$(pg_bin)
    if [ -z "$bin" ]; then
        apt-get update -qq
        apt-get install -y -qq postgresql
        bin=$(pg_bin)
    fi
    PG_PORT=$(free_port)
    PG_DATA=$(mktemp -d /tmp/facelab-pg.XXXXXX)
    export PG_DATA PG_BINDIR="$bin"
    if [ "$(id -u)" = 0 ]; then
        id -u "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$PG_USER"
        chown "$PG_USER" "$PG_DATA"
        PG_AS=(runuser -u "$PG_USER" --)
    else
        PG_AS=()
        PG_USER=$(id -un)
    fi
    "${PG_AS[@]}" "$bin/initdb" -D "$PG_DATA/data" -U facelab --auth=trust -E UTF8 >/dev/null
    "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DATA/data" -l "$PG_DATA/log" -w \
        -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    export FACELAB_TEST_POSTGRES="postgres://facelab@127.0.0.1:$PG_PORT/postgres"
    echo "PostgreSQL on 127.0.0.1:$PG_PORT (data in $PG_DATA)"
}

stop_postgres() {
    if [ -n "${PG_DATA:-}" ] && [ -d "$PG_DATA/data" ]; then
        "${PG_AS[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_DATA/data" -m fast -w stop >/dev/null || true
        rm -rf "$PG_DATA"
    fi
}
