#!/usr/bin/env bash
# Run test suites (make targets) one after another, each to its end even when an earlier one
# failed, then print how long each took and how it ended; exit with the first failure's code.
#   scripts/test-suites.sh [--sigint-ignored SUITE]... SUITE...
# --sigint-ignored runs that suite with SIGINT ignored, as `nohup make test &` does: the suites
# must pass however they are launched.
set -uo pipefail
# Unquoted where used: $(MAKE) may carry words (e.g. `make -f FILE`).
make_cmd=${MAKE:-make}
ignored=" "
suites=()
while (($#)); do
  case $1 in
    --sigint-ignored)
      [[ $# -ge 2 ]] || { echo "test-suites: --sigint-ignored needs a suite name" >&2; exit 2; }
      ignored+="$2 "; suites+=("$2"); shift 2 ;;
    -*) echo "test-suites: unknown option $1 (known: --sigint-ignored SUITE)" >&2; exit 2 ;;
    *) suites+=("$1"); shift ;;
  esac
done
[[ ${#suites[@]} -gt 0 ]] || { echo "usage: scripts/test-suites.sh [--sigint-ignored SUITE]... SUITE..." >&2; exit 2; }

rows=()
status=0
for suite in "${suites[@]}"; do
  start=$(date +%s)
  if [[ $ignored == *" $suite "* ]]; then
    note=" (SIGINT ignored)"
    (trap '' INT; $make_cmd --no-print-directory "$suite")
  else
    note=""
    $make_cmd --no-print-directory "$suite"
  fi
  rc=$?
  seconds=$(($(date +%s) - start))
  if [[ $rc -eq 0 ]]; then result=passed; else result="FAILED (exit $rc)"; fi
  [[ $status -ne 0 || $rc -eq 0 ]] || status=$rc
  rows+=("$(printf '  %-18s %3dm%02ds  %s%s' "$suite" $((seconds / 60)) $((seconds % 60)) "$result" "$note")")
done
echo
echo "Test suites:"
printf '%s\n' "${rows[@]}"
exit "$status"
