#!/usr/bin/env bash
# Runs each fuzz target given as package:Target for FUZZTIME (go test -fuzz
# takes one target per run). Every target runs; the script fails if any
# found a failing input (saved under the package's testdata/fuzz/Target,
# where `go test` replays it from then on) or failed in any other way.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=()
for t in "$@"; do
  pkg=${t%%:*} name=${t##*:}
  echo "fuzz $pkg $name for $FUZZTIME"
  "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$out"
  (( PIPESTATUS[0] == 0 )) && continue
  # Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a
  # failure (go.dev/issue/75804, fixed in Go 1.27): a bare "context deadline
  # exceeded" with no failing input written. That run fuzzed for its full
  # time and found nothing; anything else is a real failure.
  if ! grep -q 'Failing input written to' "$out" && grep -qx '    context deadline exceeded' "$out" \
     && [[ $(grep -c -e '^--- FAIL' -e '^    --- FAIL' "$out") == 1 ]]; then
    echo "NOTE: $name: the Go 1.26 fuzz coordinator reported its own -fuzztime deadline (go.dev/issue/75804); no failing input was found."
    continue
  fi
  failed+=("$t")
done
if (( ${#failed[@]} )); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
