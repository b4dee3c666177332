#!/usr/bin/env bash
# Runs every test suite of XGenMM.Cluster on a fresh Debian 12 machine that has only the .NET SDK:
# installs what the tests need when it is missing, builds, runs all test projects, and ends with one line
# "N passed, N failed[, N skipped]" over all suites.
#   ./test.sh            all tests (unit and end-to-end)
#   ./test.sh --fast     skip tests marked [Trait("Category", "E2E")]
set -uo pipefail
cd "$(dirname "$0")"

fast=0
for arg in "$@"; do
  case "$arg" in
    --fast) fast=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

./build/install-test-deps.sh || { echo "0 passed, 1 failed"; echo "installing test dependencies failed" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
extra=()
[ "$fast" = 1 ] && extra+=(--filter-not-trait "Category=E2E")

dotnet build XGenMM.Cluster.sln -c Release --nologo -v minimal 2>&1 | tee "$log"
build_rc=${PIPESTATUS[0]}
if [ "$build_rc" -ne 0 ]; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

dotnet test --solution XGenMM.Cluster.sln -c Release --no-build --no-progress "${extra[@]}" 2>&1 | tee "$log"
test_rc=${PIPESTATUS[0]}

# Microsoft.Testing.Platform prints "total/failed/succeeded/skipped" lines per run; sum the final summary block.
summary=$(awk '
  /Test run summary/ { t=0; f=0; s=0; k=0; in_block=1; next }
  in_block && /^[[:space:]]*failed:/    { f=$2 }
  in_block && /^[[:space:]]*succeeded:/ { s=$2 }
  in_block && /^[[:space:]]*skipped:/   { k=$2 }
  END { printf "%d %d %d", s, f, k }' "$log")
read -r passed failed skipped <<<"$summary"
if [ "$test_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
# The CI shows only the tail of this output: repeat each failed test's name and first lines of its error here.
if [ "$failed" -gt 0 ]; then
  echo "---- failed tests ----"
  awk '/^failed / { n=12 } n > 0 { print; n-- }' "$log" | cut -c1-400
  echo "----------------------"
fi
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
exit "$test_rc"
