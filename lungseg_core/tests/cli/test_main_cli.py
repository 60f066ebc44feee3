"""The ``lungseg`` dispatcher: top-level help and output piped into a reader that stops early."""

import subprocess
import sys

import pytest

from lungseg_core.cli.main import COMMANDS, main


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in COMMANDS)
    assert "infection %" in shown  # compare's help keeps its percent sign


def test_output_into_a_closed_pipe_ends_without_traceback():
    child = subprocess.Popen([sys.executable, "-m", "lungseg_core.cli.main", "models", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before the command writes (as `| head` after its lines)
    stderr = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
