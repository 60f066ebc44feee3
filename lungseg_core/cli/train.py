"""``lungseg train CONFIG.json [-o RUN_DIR] [--resume] [--epochs N] [--device ...] [--set KEY=VALUE ...]``.

Multi-GPU / multi-node: start it with ``torchrun --nproc_per_node N -m lungseg_core.cli.main train ...``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

HELP = "Train a lung or infection model from a JSON config (resumable; multi-GPU through torchrun)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training config (JSON), e.g. configs/seed5_unet_lungs.json")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="run folder for checkpoints, log.csv, curves.png and the model package "
                             "(default: runs/NAME beside the current folder)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the output folder from its last checkpoint")
    parser.add_argument("--fold", type=int, default=None, help="cross-validation fold to hold out (with 'folds' in the config)")
    parser.add_argument("--init-weights", default=None, metavar="MODEL",
                        help="fine-tune: start from this model (shipped name or model card path) instead of random weights")
    add_common_training_arguments(parser)


def add_common_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``crossval``."""
    parser.add_argument("--epochs", type=int, default=None, help="total number of epochs (overrides the config)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda or cuda:N")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (JSON), repeatable: --set lr=5e-4 --set slice_spec.size=128")
    parser.add_argument("--quiet", action="store_true", help="print only the final line")


def load_training_config(args: argparse.Namespace):
    """The config with ``--set`` (and ``--fold``) overrides applied; ``--epochs`` checked."""
    from lungseg_core.errors import InputError
    from lungseg_core.training.config import load_config, parse_override

    overrides = dict(parse_override(text) for text in args.overrides)
    if getattr(args, "fold", None) is not None:
        overrides["fold"] = args.fold
    if getattr(args, "init_weights", None):
        overrides["init_weights"] = args.init_weights
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs {args.epochs} is not a positive number", "give --epochs 1 or more")
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from lungseg_core.training.trainer import train

    config = load_training_config(args)
    run_dir = args.output or Path("runs") / config.name
    parts = ["lungseg", "train", str(args.config), "-o", str(run_dir)]
    if args.fold is not None:
        parts += ["--fold", str(args.fold)]
    if args.init_weights:
        parts += ["--init-weights", args.init_weights]
    command = command_line(parts, args)
    interrupt_on_stop_signals()
    result = train(config, run_dir, resume=args.resume, device=args.device, epochs=args.epochs, command=command,
                   log=None if args.quiet else print)
    # the trainer's log already ends with "...; model package: PATH"; --quiet silences that log, and the package
    # path is then the one line printed (only rank 0 writes, and reports, the package)
    if result.package is not None and args.quiet:
        print(f"model package: {result.package}")
    if result.interrupted:
        print(f"lungseg train: {interrupted_advice(result.epochs_run, args.resume)}", file=sys.stderr)
        return 130
    return 0


def interrupted_advice(epochs_run: int, resumed: bool) -> str:
    """What to do after a Ctrl-C: resume only when an epoch was saved (a first epoch cut short saves nothing)."""
    if epochs_run == 0:
        return "stopped before the first epoch ended: nothing saved; rerun the same command (without --resume)"
    again = "the same command" if resumed else "the same command and --resume"
    return f"interrupted after epoch {epochs_run}; resume with {again}"


def interrupt_on_stop_signals() -> None:
    """Make Ctrl-C (SIGINT) interrupt, whatever the parent set. A parent that ignores SIGINT (started with ``&``
    or nohup, some desktop launchers) passes SIG_IGN on to its children, and the Slicer panel's Stop would then do
    nothing until its grace time ran out and it killed the trainer without a package. On Windows a parent can
    only send CTRL_BREAK to a child: it becomes a Ctrl-C too. The trainer turns both into a stop request."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, signal.default_int_handler)


def command_line(parts: list[str], args: argparse.Namespace) -> str:
    """The command that reproduces this run (recorded in the model card)."""
    parts = list(parts)
    if args.epochs is not None:
        parts += ["--epochs", str(args.epochs)]
    for text in args.overrides:
        parts += ["--set", text]
    return " ".join(shlex.quote(p) for p in parts)
