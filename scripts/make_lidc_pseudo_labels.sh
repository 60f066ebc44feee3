#!/usr/bin/env bash
# Lung pseudo-labels for the two LIDC-IDRI CTs in ../shared/data/lidc, made with the classical method,
# laid out as image/mask folders for `lungseg train` (configs/lungsegai_lungs.json):
#   runs/pseudo_labels/lidc_train/{images,lungs}/LIDC-IDRI-0001.nii.gz   (training)
#   runs/pseudo_labels/lidc_val/{images,lungs}/LIDC-IDRI-0002.nii.gz     (validation / best checkpoint)
# The label pictures (runs/pseudo_labels/seg/*.png) were inspected before training: trachea, main bronchi,
# neck and bowel gas are outside the lungs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${LIDC_DIR:-$here/../shared/data/lidc}"
out="$here/runs/pseudo_labels"
lungseg="${LUNGSEG:-$here/.venv/bin/lungseg}"
mkdir -p "$out"
"$lungseg" segment "$data/LIDC-IDRI-0001.nii.gz" "$data/LIDC-IDRI-0002.nii.gz" \
    --model threshold --task lungs -o "$out/seg" -q
for pair in "lidc_train LIDC-IDRI-0001" "lidc_val LIDC-IDRI-0002"; do
    set -- $pair
    mkdir -p "$out/$1/images" "$out/$1/lungs"
    ln -sf "$(cd "$data" && pwd)/$2.nii.gz" "$out/$1/images/$2.nii.gz"
    cp "$out/seg/$2_lungs.nii.gz" "$out/$1/lungs/$2.nii.gz"
done
echo "pseudo-labels in $out"
