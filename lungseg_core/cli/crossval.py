"""``lungseg crossval CONFIG.json --folds K [-o OUT]``: train every fold, score each on its held-out cases."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lungseg_core.cli.train import (add_common_training_arguments, command_line, interrupt_on_stop_signals,
                                     load_training_config)

HELP = "k-fold cross-validation of a training config: train each fold, then score it on its held-out cases."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training config (JSON)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for fold_K run folders, crossval.csv and crossval.json (default: runs/NAME-cv)")
    parser.add_argument("--only-fold", dest="only_folds", type=int, action="append", default=None, metavar="K",
                        help="train and score only fold K (0 to FOLDS-1; repeatable), e.g. one fold per machine "
                             "into a shared -o folder; its report is crossval_folds_K.json, and a later run "
                             "without --only-fold keeps the finished folds and reports them all")
    add_common_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from lungseg_core.errors import InputError
    from lungseg_core.evaluation.crossval import fold_dir, report_stem, score_fold, train_folds, write_report

    if args.folds < 2:
        raise InputError(f"--folds {args.folds} cannot cross-validate", "give --folds 2 or more")
    outside = sorted({k for k in args.only_folds or [] if not 0 <= k < args.folds})
    if outside:
        raise InputError(f"--only-fold {', '.join(map(str, outside))} is not a fold of --folds {args.folds}",
                         f"give folds from 0 to {args.folds - 1}")
    config = load_training_config(args)
    out_dir = args.output or Path("runs") / f"{config.name}-cv"
    say = None if args.quiet else print

    def command_for(fold: int) -> str:
        return command_line(["lungseg", "train", str(args.config), "-o", str(fold_dir(out_dir, fold)),
                             "--set", f"folds={args.folds}", "--fold", str(fold)], args)

    interrupt_on_stop_signals()  # Ctrl-C stops the crossval (train_folds raises KeyboardInterrupt: exit 130)
    folds = sorted(set(args.only_folds)) if args.only_folds else list(range(args.folds))
    run_dirs = train_folds(config, out_dir, args.folds, device=args.device, epochs=args.epochs,
                           command_for=command_for, log=say, only=folds)
    rows = []
    for fold, run_dir in zip(folds, run_dirs):
        rows += score_fold(config, run_dir, fold, args.folds, device=args.device)
    stem = report_stem(args.folds, folds)
    report = write_report(rows, out_dir, stem)
    for label, stats in report["overall"].items():
        if isinstance(stats, dict):
            print(f"{label}: Dice {_fmt(stats['dice_mean'])} ± {_fmt(stats['dice_sd'])} over "
                  f"{stats['scored_cases']} cases, pooled {_fmt(stats['dice_pooled'])}")
    scope = "" if stem == "crossval" else f" (folds {', '.join(map(str, folds))} of {args.folds} only)"
    print(f"cross-validation report{scope}: {out_dir / (stem + '.json')}")
    return 0


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
