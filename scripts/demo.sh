#!/usr/bin/env bash
# Set everything up on a fresh machine and segment the real sample chest CT that slicerio ships
# (CTChest4) into ./lungseg-demo/, then score it against the sample's own right/left lung labels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh" render
OUT="${1:-lungseg-demo}"
CT="$(python -c 'import slicerio; print(slicerio.get_testdata_file("CTChest4.nrrd"))')"
lungseg segment "$CT" -o "$OUT" --overwrite
lungseg sample-reference "$OUT/reference"
lungseg evaluate --pred "$OUT" --ref "$OUT/reference" -o "$OUT/evaluation"
echo "Results in $OUT/ (open CTChest4.seg.nrrd in 3D Slicer on top of the CT)"
