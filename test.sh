#!/usr/bin/env bash
# Runs every test of AlphaMesh. This is the README's test command, and what CI runs (.ci/run).
# It installs and starts whatever the tests need: the .NET SDK must be there; PostgreSQL (Debian's
# package) is installed if missing, started, and given a role and a test database.
set -euo pipefail
cd "$(dirname "$0")"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

dotnet --version >/dev/null 2>&1 || { echo "The .NET 10 SDK is required (dotnet was not found on PATH)." >&2; exit 1; }

# PostgreSQL for the billing tests. They read ALPHAMESH_TEST_POSTGRES and create a database per test
# class, so the role needs CREATEDB. Everything here is idempotent: a second run changes nothing.
export ALPHAMESH_TEST_POSTGRES="${ALPHAMESH_TEST_POSTGRES:-Host=127.0.0.1;Port=5432;Username=alphamesh_test;Password=alphamesh_test;Database=alphamesh_test}"
prepare_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "PostgreSQL is missing: run 'apt-get install -y postgresql' as root, or run this script as root." >&2; exit 1; }
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  # An already running cluster makes pg_ctlcluster exit 2; that is fine.
  pg_ctlcluster "$version" main start || pg_ctlcluster "$version" main status >/dev/null
  su postgres -c "psql -v ON_ERROR_STOP=1 -q" <<'SQL'
SELECT 'CREATE ROLE alphamesh_test LOGIN CREATEDB PASSWORD ''alphamesh_test'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'alphamesh_test') \gexec
SELECT 'CREATE DATABASE alphamesh_test OWNER alphamesh_test'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'alphamesh_test') \gexec
SQL
}
if [ "${ALPHAMESH_SKIP_POSTGRES_SETUP:-}" != 1 ]; then prepare_postgres; fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
dotnet build AlphaMesh.sln -c Release -warnaserror
# Style and formatting as the build enforces them; whitespace too.
dotnet format whitespace AlphaMesh.sln --verify-no-changes
# The allocation budget (benchmarks/allocation-budget.json): a short BenchmarkDotNet run of every listed hot path;
# fails the run when a 0-byte path allocates.
budget_log=$(mktemp)
set +e
dotnet run -c Release --no-build --project benchmarks/AlphaMesh.Benchmarks -- --check-budget >"$budget_log" 2>&1
budget_status=$?
set -e
grep -E '^(allocation budget|ALLOCATION BUDGET)' "$budget_log" || true
if [ "$budget_status" -ne 0 ]; then
  tail -n 40 "$budget_log"
  echo "The allocation budget check failed (see above)." >&2
  exit 1
fi
rm -f "$budget_log"
set +e
dotnet test AlphaMesh.sln -c Release --no-build --blame-hang-timeout 10m 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One summary line for the CI, summed over the test assemblies.
awk '/^(Passed|Failed)!/ {
       for (i = 1; i <= NF; i++) {
         gsub(",", "", $(i+1));
         if ($i == "Failed:") f += $(i+1); else if ($i == "Passed:") p += $(i+1); else if ($i == "Skipped:") s += $(i+1); else if ($i == "Total:") t += $(i+1)
       }
       n++
     }
     END {
       printf "TEST SUMMARY: %d assemblies, total %d, passed %d, failed %d, skipped %d\n", n, t, p, f, s
       if (t == 0) exit 1
     }' "$log" || { echo "No test ran." >&2; exit 1; }
exit "$status"
