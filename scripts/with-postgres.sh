#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh COMMAND [ARG...]
#        scripts/with-postgres.sh --installed
#
# Runs COMMAND with a throwaway PostgreSQL server: a new cluster in a
# temporary directory, listening on 127.0.0.1 on a free port, with a random
# password. COMMAND gets the server's superuser URL in TEST_POSTGRES_URL
# (the tests create a database of their own on it). The server is stopped and
# its directory removed when COMMAND ends, fails or is interrupted; the exit
# status is COMMAND's.
#
# --installed exits 0 if the PostgreSQL server programs can be found.
# Debian/Ubuntu: apt-get install postgresql. macOS: brew install postgresql.
set -euo pipefail

find_bin() {
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"
    return
  fi
  # Debian keeps the server programs out of PATH, one directory per major version.
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]] && echo "$d"
}

if ! bin=$(find_bin) || [[ -z "$bin" ]]; then
  [[ "${1:-}" == --installed ]] && exit 1
  echo "with-postgres: PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)" >&2
  exit 1
fi
[[ "${1:-}" == --installed ]] && exit 0
if (($# == 0)); then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

# PostgreSQL refuses to run as root: as root, run it as the postgres user
# that the Debian package creates.
as_pg=()
if ((EUID == 0)); then
  if ! id postgres >/dev/null 2>&1; then
    echo "with-postgres: running as root and there is no postgres user to run the server as" >&2
    exit 1
  fi
  as_pg=(runuser -u postgres --)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/movieapp-pg.XXXXXX")
started=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$started" ]]; then
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
((EUID == 0)) && chown postgres "$dir"

password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$password" >"$dir/password"
((EUID == 0)) && chown postgres "$dir/password"
# --no-sync and fsync=off: a test cluster that dies with the machine is
# thrown away anyway, and fsyncs would only slow the tests down.
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U movieapp --pwfile="$dir/password" \
  --auth=scram-sha-256 --no-locale -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}
rm -f "$dir/password"

# Another process may take a free port between the check and the bind: try
# a few ports before giving up.
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    continue # in use
  fi
  if "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c fsync=off -c max_connections=200" \
    start >/dev/null; then
    started=1
    break
  fi
done
if [[ -z "$started" ]]; then
  echo "with-postgres: the server did not start; its log:" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
fi

export TEST_POSTGRES_URL="postgres://movieapp:$password@127.0.0.1:$port/postgres?sslmode=disable"
echo "with-postgres: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (TEST_POSTGRES_URL)" >&2
set +e
"$@"
