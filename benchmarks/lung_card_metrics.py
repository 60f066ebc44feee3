"""The lung model card's benchmark metrics, re-read from the result files of ``accuracy_lungs.py``.

    python benchmarks/lung_card_metrics.py CARD.json [--four benchmarks/results/accuracy_lungs.json]
        [--twelve benchmarks/results/accuracy_lungs_12_seeds.json] > metrics.json
    python scripts/ship_model.py RUN/model/lungsegai-lungs.json --metrics metrics.json

After new weights are measured, each non-validation metric of CARD (usually the card shipped before) gets its value
(and minimum) from the matching entry of the results, keeping its command and data text: a metric named
``NAME_dice_right_left`` reads entry NAME, ``NAME_12_seeds_...`` the same entry of the 12-seed file, any other
metric the entry of its own name. A test checks that the shipped card agrees with the committed results.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "lungsegai-lungs"  # the results' key of the measured model (accuracy_lungs.py --model lungsegai-lungs)


def _right_left(entry: dict, key: str) -> list[float]:
    return [round(entry["right"][key], 4), round(entry["left"][key], 4)]


def card_metrics(card: dict, four_seeds: dict, twelve_seeds: dict) -> dict:
    """The card's benchmark metrics with values from the two result files (``accuracy_lungs.py --json``)."""
    metrics = {}
    for name, metric in card["metrics"].items():
        if name.startswith("val_"):  # from training, not from the benchmark
            continue
        results = (twelve_seeds if "_12_seeds" in name else four_seeds)[MODEL]
        result = results[name.replace("_12_seeds", "").replace("_dice_right_left", "")]
        entry = dict(metric)
        if not name.endswith("_dice_right_left"):
            entry["value"] = result
        elif isinstance(result["right"], dict):  # lesion seeds: mean, and the worst seed
            entry["value"], entry["min"] = _right_left(result, "mean"), _right_left(result, "min")
        else:
            entry["value"] = [round(result["right"], 4), round(result["left"], 4)]
        metrics[name] = entry
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("card", type=Path)
    parser.add_argument("--four", type=Path, default=RESULTS / "accuracy_lungs.json")
    parser.add_argument("--twelve", type=Path, default=RESULTS / "accuracy_lungs_12_seeds.json")
    args = parser.parse_args()
    card, four, twelve = (json.loads(path.read_text()) for path in (args.card, args.four, args.twelve))
    json.dump(card_metrics(card, four, twelve), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
