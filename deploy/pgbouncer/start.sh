#!/bin/sh
# Writes PgBouncer's configuration from the environment into /tmp (the root filesystem is
# read-only), then runs the command (pgbouncer). Transaction pooling: a server connection is
# the client's for one transaction only, so the platform keeps no session state through it
# (JOBS_DATABASE_POOLER=transaction turns server-side prepared statements off).
#   PGBOUNCER_SERVER_HOST, PGBOUNCER_SERVER_PORT (5432), PGBOUNCER_DATABASE, PGBOUNCER_USER,
#   PGBOUNCER_PASSWORD (the role's password: clients log in with it, and so does PgBouncer),
#   PGBOUNCER_POOL_SIZE (20): server connections per database and user,
#   PGBOUNCER_MAX_CLIENT_CONN (2000).
set -eu
dir=/tmp/pgbouncer
mkdir -p "$dir"
umask 077
printf '"%s" "%s"\n' "$PGBOUNCER_USER" "$PGBOUNCER_PASSWORD" > "$dir/userlist.txt"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
${PGBOUNCER_DATABASE} = host=${PGBOUNCER_SERVER_HOST} port=${PGBOUNCER_SERVER_PORT:-5432} dbname=${PGBOUNCER_DATABASE}

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = ${PGBOUNCER_MAX_CLIENT_CONN:-2000}
server_check_query = SELECT 1
logfile =
pidfile =
INI
exec "$@"
