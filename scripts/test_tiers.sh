#!/usr/bin/env bash
# Run the test suite tier by tier, one pytest run each (markers in pyproject.toml), and end with one line of
# wall-clock seconds per tier: `tiers: fast 95 s, slow 300 s, cluster 120 s, browser 60 s, e2e 600 s`.
#
#     scripts/test_tiers.sh [TIER ...] [-- PYTEST_ARGS ...]     (default: every tier, fast first)
#
# Runs every tier even after a failure (CI shows all of them), then exits with the first failing tier's code;
# pytest's 5 (no test in that tier) counts as a pass.
# Each test runs in exactly one tier, even one marked twice by mistake: e2e > browser > cluster > slow.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

declare -A SELECT=(
  [fast]="not e2e and not browser and not cluster and not slow"  # = `make test-fast`
  [slow]="slow and not cluster and not browser and not e2e"
  [cluster]="cluster and not browser and not e2e"
  [browser]="browser and not e2e"
  [e2e]="e2e"
)
ORDER=(fast slow cluster browser e2e)

tiers=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  [ -n "${SELECT[$1]+set}" ] || { echo "unknown tier '$1' (tiers: ${ORDER[*]})" >&2; exit 2; }
  tiers+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
[ ${#tiers[@]} -gt 0 ] || tiers=("${ORDER[@]}")

timings=()
failed=""
status=0
for tier in "${tiers[@]}"; do
  echo "=== tier: $tier (-m \"${SELECT[$tier]}\")"
  started=$SECONDS
  "$PYTHON" -m pytest -m "${SELECT[$tier]}" --durations=15 "$@"
  code=$?
  timings+=("$tier $((SECONDS - started)) s")
  if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then
    failed+=" $tier"
    [ "$status" -ne 0 ] || status=$code
  fi
done
(IFS=,; echo "tiers:${timings[*]/#/ }${failed:+ — failed:$failed}")
exit "$status"
