#!/usr/bin/env bash
# Set everything up on a fresh machine and run the test suite (core + Slicer bridge against slicer-core).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh" "dev,render,slicer-test,imagenet"
cd "$ROOT"
set +e
python -m pytest lungseg_core LungSegAI "$@"
status=$?
set -e
# pytest exits 5 when it collected no test (e.g. a -k filter matching nothing): not a failure of the code.
if [ "$status" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit "$status"
