"""``lungseg models``: list the available models with their cards."""

from __future__ import annotations

import argparse
import json

from lungseg_core.models import zoo

HELP = "List available models (classical method and shipped networks) with their model cards."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("lungs", "infection", "all"), default="all")
    parser.add_argument("--json", action="store_true", help="print the full cards as JSON")


def run(args: argparse.Namespace) -> int:
    cards = zoo.available_models(args.task)
    if args.json:
        print(json.dumps([{k: v for k, v in c.items() if not k.startswith("_")} for c in cards], indent=2))
        return 0
    for card in cards:
        marker = "*" if card.get("default") else " "
        print(f"{marker} {card['name']:<28} task={card['task']:<10} architecture={card['architecture']}")
        if card.get("description"):
            print(f"    {card['description']}")
        for metric, value in (card.get("metrics") or {}).items():
            shown = value.get("value") if isinstance(value, dict) else value
            print(f"    {metric}: {shown}")
        if card.get("sha256"):
            print(f"    sha256: {card['sha256']}")
    print("(* = default for its task)")
    return 0
