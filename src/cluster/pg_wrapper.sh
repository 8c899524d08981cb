# Supervisor of one throwaway PostgreSQL cluster (src/cluster/supervisor.rs): run as
# `sh pg_wrapper.sh BASE BINDIR` by the OS user owning the cluster, stdin a pipe from the
# process that started it (walaudit demo, a test, a benchmark).
#
# It reads one command per line from stdin and answers one line on stdout:
#   initdb  -> "ok" | "err RC"     initdb into BASE/data (superuser postgres; its password from
#                                  BASE/pwfile when that file exists)
#   start   -> "ok PID"            start the postmaster in the background (log: BASE/postgres.log)
#   stop    -> "ok"                fast shutdown (SIGINT) and wait for the postmaster to exit
#   crash   -> "ok"                immediate shutdown (SIGQUIT): the next start runs crash recovery
# End of stdin means the owning process is finished or gone (exit, panic, abort, SIGKILL: the
# kernel closes the pipe in every case): fast shutdown, then BASE is removed. This is what
# guarantees that no server and no data directory outlive that process.
set -u
base=$1
bin=$2
# Terminal signals are for the owning process; this script must survive them to clean up.
trap '' INT TERM HUP PIPE
exec 2>>"$base/wrapper.log"
cd "$base" || exit 1
pg=

reply() { printf '%s\n' "$*" 2>/dev/null || :; }

# stop SIGNAL: signal the postmaster (if any) and reap it.
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
        set -- -D "$base/data" -U postgres --auth-local=trust --encoding=UTF8 --locale=C -N
        if [ -f "$base/pwfile" ]; then
            set -- "$@" --pwfile="$base/pwfile" --auth-host=scram-sha-256
        else
            set -- "$@" --auth-host=reject
        fi
        if "$bin/initdb" "$@" >"$base/initdb.log" 2>&1 </dev/null; then
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
    crash)
        stop QUIT
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
