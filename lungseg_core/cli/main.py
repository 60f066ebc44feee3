"""``lungseg`` command: dispatches to one module per sub-command.

Each sub-command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`LungSegError`) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lungseg_core import __version__
from lungseg_core.errors import LungSegError

COMMANDS = {
    "segment": "lungseg_core.cli.segment",
    "evaluate": "lungseg_core.cli.evaluate",
    "models": "lungseg_core.cli.models",
    "train": "lungseg_core.cli.train",
    "crossval": "lungseg_core.cli.crossval",
    "compare": "lungseg_core.cli.compare",
    "sample-reference": "lungseg_core.cli.sample_reference",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lungseg", description="Lung and lung-infection segmentation for chest CT.")
    parser.add_argument("--version", action="version", version=f"lungseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # sub-command not available in this build
                continue
            raise
        # argparse expands %-codes in help (not in a description without %(prog)): "infection %" must be %%
        command = sub.add_parser(name, help=module.HELP.replace("%", "%%"), description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except LungSegError as exc:
        print(f"lungseg {args.command}: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lungseg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (`lungseg models --json | head`)
        # Python would report the failed flush of stdout at exit: point stdout at devnull first
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as shell tools exit


if __name__ == "__main__":
    sys.exit(main())
