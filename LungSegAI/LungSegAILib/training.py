"""Commands behind the batch training / evaluation panel (run as child processes by worker.ProcessTask).

Training: a seed recipe (configs/*.json) or an architecture, with the user's dataset folder, epochs and
output folder, becomes a config file that ``lungseg train CONFIG -o RUN_DIR`` runs. Evaluation: the model
segments a labelled folder's images (``lungseg segment``), then ``lungseg evaluate`` compares them with the
labels and writes the per-case metrics table and summary plot that the panel loads back.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from LungSegAILib.worker import lungseg_command


def find_recipes(configs_dir: str | Path) -> dict[str, Path]:
    """Seed recipes and shipped-model configs: display name -> config path."""
    folder = Path(configs_dir)
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.json"))}


def training_config(recipe: str | Path | dict, dataset_dir: str | Path, epochs: int,
                    architecture: str | None = None) -> dict:
    """A recipe with the user's dataset, epoch count and (optionally) architecture filled in.

    Keys follow ``lungseg_core.training.config.TrainConfig``: the recipe's data sources are replaced by one
    source, the user's folder (its layout detected: COVID-19-CT-Seg, MedSeg, nnU-Net, image/mask pairs...).
    """
    config = json.loads(Path(recipe).read_text(encoding="utf-8")) if not isinstance(recipe, dict) else recipe
    config = json.loads(json.dumps(config))  # deep copy: never edit the shipped recipe
    config["data"] = [{"root": str(Path(dataset_dir).resolve()), "layout": "auto"}]
    config["epochs"] = int(epochs)
    if architecture:
        config["architecture"] = architecture
    config.pop("source_path", None)
    return config


def train_command(config_path: str | Path, run_dir: str | Path, python: str | None = None,
                  resume: bool = False) -> list[str]:
    arguments = ["train", str(config_path), "-o", str(run_dir)] + (["--resume"] if resume else [])
    return lungseg_command(arguments, python)


def evaluation_commands(images_dir: str | Path, labels_dir: str | Path, out_dir: str | Path, task: str,
                        lung_model: str, infection_model: str, device: str = "auto",
                        python: str | None = None) -> list[list[str]]:
    """Two steps: predict the labelled folder's images into OUT/pred, then evaluate OUT/pred against labels."""
    out_dir = Path(out_dir)
    predictions = out_dir / "pred"
    segment = ["segment", str(images_dir), "-o", str(predictions), "--task", task,
               "--lung-model", lung_model, "--infection-model", infection_model, "--device", device, "--overwrite"]
    evaluate = ["evaluate", "--pred", str(predictions), "--ref", str(labels_dir), "-o", str(out_dir / "evaluation"),
                "--task", task]
    return [lungseg_command(segment, python), lungseg_command(evaluate, python)]


def read_metrics_csv(path: str | Path) -> list[dict[str, object]]:
    """Per-case metrics rows (numbers as floats) for a table node."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({key: _number(value) for key, value in row.items()})
    return rows


def _number(value: str | None) -> object:
    try:
        return float(value) if value not in (None, "") else ""
    except ValueError:
        return value


def find_outputs(folder: str | Path, patterns: Sequence[str]) -> Path | None:
    """The newest file matching any pattern under ``folder`` (metrics CSV, summary PNG, training log)."""
    candidates = [p for pattern in patterns for p in Path(folder).rglob(pattern)]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None
