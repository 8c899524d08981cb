#!/usr/bin/env bash
# Installs what `cargo test` and `cargo run -- demo` need besides Rust, on Debian or Ubuntu:
# the PostgreSQL server, openssl (TLS test certificates), promtool and the Prometheus server
# (the ops suite; Debian's prometheus package ships both), Prometheus Alertmanager (the alerts
# of validation jobs), kill (procps), util-linux `script` (bsdutils; the progress-bar test) and
# a C++ compiler (g++; libFuzzer, which the fuzz targets in tests/fuzz link), and python3 with
# venv for the reference tools the tests compare with (reladiff, installed from PyPI into
# ~/.cache/walaudit-venv, or $WALAUDIT_VENV). See tests/README.md.
#
# Usage: tests/setup.sh          (PG_VERSION=16 tests/setup.sh for another server version)
#
# When everything is there it says so and exits 0. Otherwise, as root, it installs the missing
# packages with apt-get; as another user it installs nothing, prints the `sudo apt-get ...`
# command that does it, and exits 1.
set -euo pipefail

# With PG_VERSION set, that server version is required; without it, any server the tests find
# will do ($WALAUDIT_PG_BIN, else /usr/lib/postgresql/{17,16,15,14}/bin), and 15 is installed
# when there is none.
if [ -n "${PG_VERSION:-}" ]; then
    candidates=("/usr/lib/postgresql/$PG_VERSION/bin")
elif [ -n "${WALAUDIT_PG_BIN:-}" ]; then
    candidates=("$WALAUDIT_PG_BIN")
else
    candidates=(/usr/lib/postgresql/{17,16,15,14}/bin)
fi
PG_VERSION="${PG_VERSION:-15}"

# have PROGRAM: an executable file PROGRAM is on the PATH (not a shell builtin: `kill` is one).
have() {
    local path
    path=$(type -P "$1") && [ -f "$path" ] && [ -x "$path" ]
}

missing=()
server=
for dir in "${candidates[@]}"; do
    if [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
        server=$dir
        break
    fi
done
if [ -z "$server" ] && [ "${candidates[0]}" = "${WALAUDIT_PG_BIN:-}" ]; then
    echo "tests/setup.sh: WALAUDIT_PG_BIN=$WALAUDIT_PG_BIN holds no postgres and initdb, and the" \
        "tests look only there while it is set: unset it, or point it at a server's bin directory" >&2
    exit 1
fi
[ -n "$server" ] || missing+=("postgresql-$PG_VERSION")
have openssl || missing+=(openssl)
{ have promtool && have prometheus; } || missing+=(prometheus)
have prometheus-alertmanager || missing+=(prometheus-alertmanager)
have kill || missing+=(procps)
have script || missing+=(bsdutils)
have c++ || missing+=(g++)
{ have python3 && python3 -c 'import ensurepip, venv' 2>/dev/null; } || missing+=(python3 python3-venv)

# The Python reference tools of the tests, pinned, in a virtualenv of their own.
VENV="${WALAUDIT_VENV:-$HOME/.cache/walaudit-venv}"
PY_TOOLS=("reladiff[postgresql]==0.6.0" "schemathesis==4.32.5")
python_tools() {
    if [ -x "$VENV/bin/reladiff" ] && [ -x "$VENV/bin/schemathesis" ]; then
        return
    fi
    echo "tests/setup.sh: installing ${PY_TOOLS[*]} into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "${PY_TOOLS[@]}"
}

if [ "${#missing[@]}" -eq 0 ]; then
    python_tools
    version=$("$server/postgres" --version | sed -n 's/.*(PostgreSQL) \([0-9]*\).*/\1/p')
    echo "PostgreSQL ${version:-?} server found in $server; promtool, prometheus, alertmanager, script and c++ found"
    exit 0
fi

install="apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null; then
    echo "tests/setup.sh: missing ${missing[*]}, and there is no apt-get to install them:" \
        "install the equivalent packages with your system's package manager" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: missing ${missing[*]}; not root, so nothing was installed. Run:" >&2
    echo "    sudo apt-get update && sudo $install" >&2
    exit 1
fi

echo "tests/setup.sh: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive $install
python_tools
# The PostgreSQL package may create and start a default cluster (15/main on port 5432). The
# tests neither use nor collide with it (own directory, own port, own socket), so it is left be.
