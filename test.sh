#!/usr/bin/env bash
# Runs every test of AlphaMesh. This is the README's test command, and what CI runs (.ci/run).
# It installs and starts whatever the tests need; today that is only the .NET SDK itself.
set -euo pipefail
cd "$(dirname "$0")"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

dotnet --version >/dev/null 2>&1 || { echo "The .NET 10 SDK is required (dotnet was not found on PATH)." >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
dotnet build AlphaMesh.sln -c Release -warnaserror
# Style and formatting as the build enforces them; whitespace too.
dotnet format whitespace AlphaMesh.sln --verify-no-changes
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
