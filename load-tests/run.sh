#!/usr/bin/env bash
# The one load command: builds Release (the server and the harness) and runs a scenario. The harness starts the
# server itself (on a fresh temporary data directory and free loopback ports, removed at the end), because it stops,
# kills and restarts it (restart) and reads its CPU and memory from /proc; it ends with the exactness check and
# writes benchmarks/results/<scenario>-<UTC time>/. Exit status: 0 passed, 1 failed, 64 bad arguments.
#   load-tests/run.sh                                   # steady, 50,000 events/s for 20 s
#   load-tests/run.sh steady --rate 0 --streams 4       # as fast as acknowledged
#   load-tests/run.sh ramp | spike | soak | restart     # see --help
# With --endpoint URL (and --rest, --key) it drives a running server instead. SKIP_BUILD=1 skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  dotnet build src/Server -c Release -warnaserror -v quiet -nologo | { grep -v '^\s*$' || true; }
  dotnet build load-tests/AlphaMesh.LoadTests -c Release -warnaserror -v quiet -nologo | { grep -v '^\s*$' || true; }
fi

# Recorded in the report: the command as typed, and the commit it ran on.
export ALPHAMESH_LOAD_COMMAND="load-tests/run.sh$(printf ' %q' "$@")"
ALPHAMESH_LOAD_COMMIT="$(git describe --always --dirty --abbrev=12 2>/dev/null || true)"
export ALPHAMESH_LOAD_COMMIT

server=(--server-dll src/Server/bin/Release/net10.0/AlphaMesh.Server.dll)
for arg in "$@"; do
  if [[ "$arg" == --endpoint ]]; then server=(); fi
done
exec dotnet load-tests/AlphaMesh.LoadTests/bin/Release/net10.0/AlphaMesh.LoadTests.dll "$@" "${server[@]}"
