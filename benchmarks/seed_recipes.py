"""Train every seed recipe of configs/ on the data we have, at a reduced scale a 2-core CPU can afford, and score it.

    python benchmarks/seed_recipes.py [--epochs 6] [--size 128] [--slices 48] [--only seed1 seed3] [--json OUT]

- Lung recipes (seeds 1-5) train on the classical pseudo-labels of LIDC-IDRI-0001 (LIDC-IDRI-0002 picks the
  best epoch), made by ``bash scripts/make_lidc_pseudo_labels.sh``, and are scored on CTChest4 (slicerio's
  real CT with expert labels, never trained on): Dice per lung after the usual lung post-processing.
- Infection recipes (seed 5) train on fold 0 of the 5-fold split of the 50 COVID-SemiSeg slices (the same
  fold as ``lungsegai-infection``'s shipped model) and are scored on the 10 held-out slices at their own
  resolution: mean "any infection" Dice, as in ``lungseg crossval``.

Everything else in each recipe (architecture, loss, optimiser, learning rate, schedule, augmentation,
enhancement) stays as the config says; only epochs, slice size and slices per case are cut, and the command
of every run is recorded. Runs that finished are kept (one folder per recipe and scale), so the script resumes
after an interruption; the JSON holds each recipe's latest scale.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PSEUDO = ROOT / "runs" / "pseudo_labels"
COVID = ROOT.parent / "shared" / "data" / "covid_semiseg" / "train"
INFECTION_FOLDS, INFECTION_FOLD = 5, 0


def lung_data() -> list[dict]:
    # roots relative to configs/ (where the recipes live), as the shipped configs give them: a copyable command
    return [{"root": f"../{(PSEUDO / name).relative_to(ROOT)}", "layout": "folders", "role": role,
             "options": {"mask_dir": "lungs"}}
            for name, role in (("lidc_train", "train"), ("lidc_val", "val"))]


def train_command(config: Path, run_dir: Path, args) -> list[str]:
    task = json.loads(config.read_text())["task"]
    shown_dir = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir  # the command runs in ROOT
    command = ["lungseg", "train", str(config.relative_to(ROOT)), "-o", str(shown_dir), "--quiet",
               "--epochs", str(args.epochs), "--device", "cpu",
               "--set", f"slice_spec.size={args.size}", "--set", f"max_slices_per_case={args.slices}"]
    if task == "lungs":
        command += ["--set", "data=" + json.dumps(lung_data())]
    else:
        command += ["--set", f"folds={INFECTION_FOLDS}", "--fold", str(INFECTION_FOLD)]
    return command


def score_lungs(card_path: Path) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import slicerio
    from accuracy_lungs import per_lung_dice

    from lungseg_core.inference.segmenter import Segmenter
    from lungseg_core.io import read_labelmap, read_volume

    ct = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))
    ref = read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs").array
    return {"ctchest4_dice": per_lung_dice(Segmenter(str(card_path), "lungs", device="cpu").predict(ct), ref)}


def score_infection(config: Path, run_dir: Path, args) -> dict:
    from lungseg_core.evaluation.crossval import UNION, score_fold, summarize
    from lungseg_core.training.config import load_config

    overrides = {"slice_spec.size": args.size, "max_slices_per_case": args.slices}
    summary = summarize(score_fold(load_config(config, overrides), run_dir, INFECTION_FOLD, INFECTION_FOLDS))
    return {"heldout_slices": summary["cases"], "any_infection_dice_mean": summary[UNION]["dice_mean"],
            "any_infection_dice_pooled": summary[UNION]["dice_pooled"]}


def scale_of(args) -> dict:
    return {"epochs": args.epochs, "size": args.size, "slices_per_case": args.slices}


def run_recipe(config: Path, out_dir: Path, args, previous: dict) -> dict:
    """Train (or keep the finished run of the same scale) and score; ``previous`` is this recipe's earlier
    result, if any."""
    # one folder per scale: a run kept from another scale would be scored as if trained at this one
    run_dir = out_dir / f"{config.stem}-e{args.epochs}-s{args.size}-n{args.slices}"
    command = train_command(config, run_dir, args)
    # wall time of the call that trained the run; a kept run keeps the time measured when it was trained
    seconds = previous.get("wall_seconds", 0.0) if previous.get("scale") == scale_of(args) else None
    if not (run_dir / "summary.json").exists():
        started = time.perf_counter()
        resume = ["--resume"] if (run_dir / "checkpoints" / "last.pt").exists() else []
        subprocess.run(command + resume, check=True, cwd=ROOT)
        seconds = round(time.perf_counter() - started, 1)
    card_path = next((run_dir / "model").glob("*.json"))
    card = json.loads(card_path.read_text())
    task = card["task"]
    scores = score_lungs(card_path) if task == "lungs" else score_infection(config, run_dir, args)
    return {"config": config.name, "architecture": card["architecture"], "task": task,
            "command": " ".join(command), "epochs_run": card["training"]["epochs"],
            "best_epoch": card["training"]["best_epoch"], "train_seconds": card["training"]["seconds"],
            "wall_seconds": seconds, "scale": scale_of(args), **scores}


def markdown_table(results: dict) -> str:
    """The docs/models.md table of the measured runs."""
    lines = ["| config | network | scale: epochs, px, slices per case | epochs run (best) | train time | held-out Dice |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if r["task"] == "lungs":
            score = f"CTChest4 right / left: {r['ctchest4_dice']['right']:.3f} / {r['ctchest4_dice']['left']:.3f}"
        else:
            score = f"{r['heldout_slices']} held-out slices, any infection: {r['any_infection_dice_mean']:.3f}"
        scale = r["scale"]
        lines.append(f"| `{r['config']}` | {r['architecture']} | {scale['epochs']}, {scale['size']}, "
                     f"{scale['slices_per_case']} | {r['epochs_run']} ({r['best_epoch']}) | "
                     f"{r['train_seconds'] / 60:.1f} min | {score} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--size", type=int, default=128, help="in-plane slice size (the recipes say 256)")
    parser.add_argument("--slices", type=int, default=48, help="at most this many slices per case")
    parser.add_argument("--only", nargs="*", default=None, help="config name prefixes, e.g. seed1 seed5_unet")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "seed_recipes")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "seed_recipes.json")
    parser.add_argument("--table", action="store_true", help="only print the markdown table of the --json results")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.json.read_text())))
        return
    if not (PSEUDO / "lidc_train").exists():
        sys.exit("LIDC pseudo-labels missing: run `bash scripts/make_lidc_pseudo_labels.sh` first")
    configs = sorted((ROOT / "configs").glob("seed*.json"))
    if args.only:
        configs = [c for c in configs if any(c.stem.startswith(prefix) for prefix in args.only)]
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    for config in configs:
        if "infection" in config.stem and not COVID.exists():
            print(f"{config.name}: COVID-SemiSeg data missing, skipped")
            continue
        results[config.stem] = run_recipe(config, args.out, args, results.get(config.stem, {}))
        print(json.dumps({config.stem: results[config.stem]}, indent=1), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
