# Sourced by .ci/run: start a throwaway PostgreSQL on loopback and export
# FLUJO_TEST_POSTGRES_DSN for the tests. Installs Debian's postgresql package if missing.
# Stopped (and its data directory removed) when the calling shell exits.

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
FLUJO_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
FLUJO_PG_DATA=$(mktemp -d /tmp/flujo-pg.XXXXXX)
# initdb refuses to run as root; the postgres system user comes with the package.
chown postgres "$FLUJO_PG_DATA"
runuser -u postgres -- "$FLUJO_PG_BIN/initdb" -D "$FLUJO_PG_DATA" -A trust -U postgres >/dev/null
FLUJO_PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
runuser -u postgres -- "$FLUJO_PG_BIN/pg_ctl" -D "$FLUJO_PG_DATA" -l "$FLUJO_PG_DATA/server.log" -w \
    -o "-h 127.0.0.1 -p $FLUJO_PG_PORT -k $FLUJO_PG_DATA -c max_connections=300 -c fsync=off" start >/dev/null
export FLUJO_TEST_POSTGRES_DSN="postgresql://postgres@127.0.0.1:$FLUJO_PG_PORT/postgres"
flujo_stop_postgres() {
    runuser -u postgres -- "$FLUJO_PG_BIN/pg_ctl" -D "$FLUJO_PG_DATA" -m fast stop >/dev/null 2>&1
    rm -rf "$FLUJO_PG_DATA"
}
trap flujo_stop_postgres EXIT
echo "PostgreSQL for tests: $FLUJO_TEST_POSTGRES_DSN"
