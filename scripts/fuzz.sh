#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time each.
# Usage: scripts/fuzz.sh [FUZZTIME]   (default 30000x: a count of inputs per
# target, which keeps the run short and avoids the fuzzing coordinator's
# end-of-time race; a duration such as 5m works too)
set -euo pipefail
fuzztime=${1:-30000x}
cd "$(dirname "$0")/.."
fail=0
while IFS= read -r file; do
  pkg="./$(dirname "$file")"
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "fuzz $pkg $target ($fuzztime)"
    ok=0
    for attempt in 1 2; do
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/kiln-fuzz.$$.log 2>&1; then
        ok=1; break
      fi
      # A real finding names a failing input; the coordinator's
      # "context deadline exceeded" at the end of a timed run does not.
      if grep -q "Failing input" /tmp/kiln-fuzz.$$.log || ! grep -q "context deadline exceeded" /tmp/kiln-fuzz.$$.log; then
        break
      fi
      echo "  (fuzzing coordinator timed out without a finding; retrying)"
    done
    if [ "$ok" != 1 ]; then
      cat /tmp/kiln-fuzz.$$.log
      fail=1
    fi
  done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' internal cmd 2>/dev/null | sort)
rm -f /tmp/kiln-fuzz.$$.log
exit $fail
