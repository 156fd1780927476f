#!/usr/bin/env bash
# Builds Release, starts the AlphaMesh server on loopback with a fresh temporary data directory, runs the load
# command against it with the arguments given (see `--help` of the load command), then stops the server with
# SIGTERM and removes the data. Example:
#   load-tests/run.sh --rate 0 --batch 1000 --clients 2 --duration 10
#   load-tests/run.sh --rate 200000 --batch 1000 --duration 20
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  dotnet build AlphaMesh.sln -c Release -warnaserror -v quiet -nologo >/dev/null
fi

data=$(mktemp -d -t alphamesh-load-XXXXXX)
# The embedded PostgreSQL runs as the postgres user when this runs as root, and must reach the data directory.
chmod 0755 "$data"
key="load-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

# From its output directory, so that its appsettings.json (endpoints 5080/5081, log levels) is the configuration.
(cd src/Server/bin/Release/net10.0 && ALPHAMESH_BOOTSTRAP_KEY="$key" exec dotnet AlphaMesh.Server.dll --data-dir "$data") \
  >"$data/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 150); do
  if curl -fsS --max-time 1 http://127.0.0.1:5080/healthz >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then echo "The server exited during start:" >&2; cat "$data/server.log" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS --max-time 1 http://127.0.0.1:5080/healthz >/dev/null || { echo "The server did not become healthy in 30 s." >&2; exit 1; }

set +e
ALPHAMESH_BOOTSTRAP_KEY="$key" dotnet load-tests/AlphaMesh.LoadTests/bin/Release/net10.0/AlphaMesh.LoadTests.dll \
  --endpoint http://127.0.0.1:5081 --server-pid "$server_pid" "$@"
status=$?
set -e

kill -TERM "$server_pid"
if ! wait "$server_pid"; then echo "The server did not exit cleanly." >&2; status=1; fi
if grep -q '"LogLevel":"\(Error\|Critical\)"' "$data/server.log"; then
  echo "The server logged errors:" >&2; grep '"LogLevel":"\(Error\|Critical\)"' "$data/server.log" | head -n 5 >&2
fi
server_pid=""
exit "$status"
