"""DistributedDataParallel through torchrun: 2 CPU processes on gloo, one tiny epoch."""

import json
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# Each rank trains into RUN/rank<N>: every rank is told to write, so any file from rank 1 would show up.
SCRIPT = """
import json, os, sys
import torch.distributed as dist
from lungseg_core.training.config import TrainConfig
from lungseg_core.training.trainer import train

rank = int(os.environ["RANK"])
config = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
result = train(config, os.path.join(sys.argv[2], f"rank{rank}"), device="cpu", log=None)
report = {"rank": rank, "world": int(os.environ["WORLD_SIZE"]), "epochs": result.epochs_run,
          "val_loss": result.history[-1]["val_loss"], "train_loss": result.history[-1]["train_loss"],
          "package": str(result.package) if result.package else None}
open(os.path.join(sys.argv[3], f"report{rank}.json"), "w").write(json.dumps(report))
"""


def run_torchrun(tmp_path, config: dict, script: str, what: str) -> Path:
    """Run ``script`` (argv: config, run dir, reports dir) on 2 CPU ranks through torchrun; the reports dir."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "script.py").write_text(script)
    reports = tmp_path / "reports"
    reports.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(tmp_path / "script.py"),
         str(tmp_path / "config.json"), str(tmp_path / "run"), str(reports)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun's workers too: never leave orphans behind
        process.communicate()
        pytest.fail(f"{what} within 180 s")
    assert process.returncode == 0, stderr[-3000:]
    return reports


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(tmp_path):
    config = {
        "name": "ddp-tiny", "task": "lungs", "architecture": "unet", "num_classes": 3,
        "architecture_kwargs": {"base_filters": 4, "depth": 2},
        "data": [{"layout": "phantom", "options": {"cases": 3, "shape": [8, 48, 48]}}],
        "slice_spec": {"size": 32, "context": 0}, "epochs": 1, "batch_size": 2, "max_slices_per_case": 3,
        "val_fraction": 0.34, "augmentation": {"enabled": True, "flip_ud": 0.5},
    }
    reports = run_torchrun(tmp_path, config, SCRIPT, "torchrun with 2 CPU processes did not finish")
    r0 = json.loads((reports / "report0.json").read_text())
    r1 = json.loads((reports / "report1.json").read_text())
    assert r0["world"] == r1["world"] == 2 and r0["epochs"] == r1["epochs"] == 1  # both ranks ran
    assert r0["val_loss"] == pytest.approx(r1["val_loss"])  # metrics all-reduced across ranks
    assert r0["train_loss"] == pytest.approx(r1["train_loss"])
    assert r0["package"] and r1["package"] is None
    assert (tmp_path / "run" / "rank0" / "log.csv").exists()
    assert (tmp_path / "run" / "rank0" / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "run" / "rank1").exists()  # only rank 0 writes


STOP_SCRIPT = """
import json, os, signal, sys
import lungseg_core.training.trainer as trainer
from lungseg_core.training.config import TrainConfig

rank = int(os.environ["RANK"])
real, calls = trainer.train_one_epoch, []

def train_one_epoch(*args, **kwargs):  # only rank 1 gets the Ctrl-C, as epoch 2 starts
    calls.append(1)
    if rank == 1 and len(calls) == 2:
        signal.raise_signal(signal.SIGINT)
    return real(*args, **kwargs)

trainer.train_one_epoch = train_one_epoch
config = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
result = trainer.train(config, sys.argv[2], device="cpu", log=None)
report = {"epochs": result.epochs_run, "interrupted": result.interrupted,
          "package": str(result.package) if result.package else None}
open(os.path.join(sys.argv[3], f"report{rank}.json"), "w").write(json.dumps(report))
"""


@pytest.mark.slow
def test_torchrun_ranks_agree_on_a_stop_that_reached_one_of_them(tmp_path):
    """A rank that left the loop alone would leave the other blocked in a collective: all stop at the same batch,
    and rank 0 packages the last finished epoch."""
    config = {
        "name": "ddp-stop", "task": "lungs", "architecture": "unet", "num_classes": 3,
        "architecture_kwargs": {"base_filters": 4, "depth": 2},
        "data": [{"layout": "phantom", "options": {"cases": 3, "shape": [8, 48, 48]}}],
        "slice_spec": {"size": 32, "context": 0}, "epochs": 3, "batch_size": 1, "max_slices_per_case": 3,
        "val_fraction": 0.34,
    }
    reports = run_torchrun(tmp_path, config, STOP_SCRIPT, "the ranks did not stop together")
    r0, r1 = (json.loads((reports / f"report{rank}.json").read_text()) for rank in (0, 1))
    assert r0["interrupted"] and r1["interrupted"] and r0["epochs"] == r1["epochs"] == 1
    assert r0["package"] and json.loads((tmp_path / "run" / "summary.json").read_text())["epochs_run"] == 1
