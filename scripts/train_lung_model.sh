#!/usr/bin/env bash
# Retrain the shipped lung model (lungsegai-lungs) as it was made: the LIDC pseudo-labels, then four runs of
# configs/lungsegai_lungs.json, each starting from the weights of the one before. About an hour on a 2-core CPU.
#
#   bash scripts/train_lung_model.sh [RUN_ROOT]          (default: runs; relative to the repository)
#
# Stage runs go to RUN_ROOT/lungsegai-lungs, -ft, -ft2, -ft3. A stage whose model package is already there is not
# run again, so an interrupted chain goes on from the last finished stage. On the CPU (DEVICE=cpu, the default)
# the weights come out bit for bit as shipped: the last line compares their SHA-256 with the shipped card's.
set -euo pipefail
# run from the repository with relative paths: the model cards record the commands and paths as given
cd "$(dirname "$0")/.."
root="${1:-runs}"
lungseg="${LUNGSEG:-.venv/bin/lungseg}"
python="${PYTHON:-.venv/bin/python}"
config="configs/lungsegai_lungs.json"
stages=(lungsegai-lungs lungsegai-lungs-ft lungsegai-lungs-ft2 lungsegai-lungs-ft3)
# the last two stages: 8 epochs at 3e-4 on a cosine schedule, with 8 lesion copies per CT; their training seeds (1,
# then 2) make other lesions than the first stages saw. lungseg_core/tests/models/test_shipped_models.py reads
# this line.
finetune=(--epochs 8 --set lr=0.0003 --set scheduler=cosine --set scheduler_kwargs={} --set synthetic_lesions.copies=8)

model_of() { echo "$root/${stages[$1]}/model/lungsegai-lungs.json"; }

stage_args() {
    case "$1" in
        0) ;;  # 12 epochs at Adam 1e-3 from the ImageNet encoder (the config as committed)
        1) echo --epochs 6 --set lr=0.0003 ;;
        2) echo "${finetune[@]}" --set seed=1 ;;
        3) echo "${finetune[@]}" --set seed=2 ;;
    esac
}

first=0
for i in 3 2 1 0; do
    if [ -f "$(model_of "$i")" ]; then first=$((i + 1)); break; fi
done
bash scripts/make_lidc_pseudo_labels.sh
for ((i = first; i < ${#stages[@]}; i++)); do
    start=()
    [ "$i" -gt 0 ] && start=(--set "init_weights=$(model_of $((i - 1)))")
    read -r -a args <<< "$(stage_args "$i")"
    echo "stage $((i + 1)) of ${#stages[@]}: ${stages[$i]}"
    "$lungseg" train "$config" -o "$root/${stages[$i]}" --device "${DEVICE:-cpu}" "${args[@]}" "${start[@]}"
done
"$python" - "$(model_of 3)" <<'EOF'
import json
import sys

from lungseg_core.models import zoo

trained = json.load(open(sys.argv[1]))["sha256"]
shipped = zoo.resolve_card("lungsegai-lungs", "lungs")["sha256"]
same = "the same as" if trained == shipped else "not"
print(f"SHA-256 {trained[:12]}...: {same} the shipped weights ({shipped[:12]}...)")
EOF
