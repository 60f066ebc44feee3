"""Copy a trained model package into the package's model zoo, with its measured metrics on the card.

    python scripts/ship_model.py RUN/model/NAME.json --metrics METRICS.json [--default]

METRICS.json maps metric names to {"value": ..., "command": ..., "data": ...}; they are added to the card's
``metrics`` beside the training-validation ones. The weights are checked against the card's SHA-256 before
anything is written, and ``--default`` makes the model the task's default in ``defaults.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from lungseg_core.io.atomic import atomic_path, write_text_atomic
from lungseg_core.models import zoo


def ship(card_path: Path, metrics: dict, make_default: bool, description: str | None = None) -> Path:
    card = zoo.resolve_card(str(card_path), json.loads(card_path.read_text())["task"])
    weights = zoo.weights_path(card)
    if zoo.sha256_file(weights) != card["sha256"]:
        sys.exit(f"{weights} does not match the SHA-256 of {card_path}")
    card = {k: v for k, v in card.items() if not k.startswith("_")}
    for name, entry in metrics.items():
        if not {"value", "command", "data"} <= set(entry):
            sys.exit(f"metric {name} needs value, command and data")
    card["metrics"] = {**card.get("metrics", {}), **metrics}
    if description:
        card["description"] = description
    target = zoo.MODELS_DIR / weights.name
    with atomic_path(target) as tmp:
        shutil.copyfile(weights, tmp)
    out = write_text_atomic(zoo.MODELS_DIR / f"{card['name']}.json", json.dumps(card, indent=2) + "\n")
    if make_default:
        defaults_path = zoo.MODELS_DIR / "defaults.json"
        defaults = json.loads(defaults_path.read_text())
        defaults[card["task"]] = card["name"]
        write_text_atomic(defaults_path, json.dumps(defaults, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("card", type=Path)
    parser.add_argument("--metrics", type=Path, default=None)
    parser.add_argument("--default", action="store_true")
    parser.add_argument("--description", default=None, help="replace the card's description (what the model is for)")
    args = parser.parse_args()
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    print(ship(args.card, metrics, args.default, args.description))


if __name__ == "__main__":
    main()
