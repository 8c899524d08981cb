# Supervisor of the private cluster of `walaudit demo` (src/demo/cluster.rs): run as
# `sh pg_wrapper.sh BASE BINDIR PORT` by the OS user owning the cluster, stdin a pipe from walaudit.
#
# One command per line on stdin, one reply line on stdout:
#   initdb  -> "ok" | "err RC"   initdb into BASE/data (superuser postgres, local trust only)
#   start   -> "ok PID"          start the postmaster in the background (log: BASE/postgres.log)
#   stop    -> "ok"              fast shutdown (SIGINT), wait for the postmaster to exit
# End of stdin means walaudit is done or gone (exit, panic, SIGKILL: the kernel closes the pipe
# in every case): fast shutdown, then BASE is removed. No server and no data directory outlive
# the demo.
set -u
base=$1
bin=$2
port=$3
# Terminal signals are for walaudit; this script must survive them to clean up.
trap '' INT TERM HUP PIPE
exec 2>>"$base/wrapper.log"
cd "$base" || exit 1
pg=

reply() { printf '%s\n' "$*" 2>/dev/null || :; }

stop() {
    if [ -n "$pg" ]; then
        kill "-$1" "$pg" 2>/dev/null
        wait "$pg" 2>/dev/null
        pg=
    fi
}

while IFS= read -r cmd; do
    case $cmd in
    initdb)
        if "$bin/initdb" -D "$base/data" -U postgres --auth-local=trust --auth-host=reject \
            --encoding=UTF8 --locale=C -N >"$base/initdb.log" 2>&1 </dev/null; then
            cat >>"$base/data/postgresql.conf" <<CONF

# walaudit demo: Unix socket only, in the cluster's own directory; logical decoding.
listen_addresses = ''
port = $port
unix_socket_directories = '$base'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
fsync = off
full_page_writes = off
shared_buffers = '64MB'
CONF
            reply ok
        else
            reply "err $?"
        fi
        ;;
    start)
        stop INT
        "$bin/postgres" -D "$base/data" >>"$base/postgres.log" 2>&1 </dev/null &
        pg=$!
        reply "ok $pg"
        ;;
    stop)
        stop INT
        reply ok
        ;;
    *)
        reply "err unknown command: $cmd"
        ;;
    esac
done
stop INT
cd /
rm -rf "$base"
