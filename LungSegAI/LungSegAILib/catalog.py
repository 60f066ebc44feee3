"""The model list the module shows, read from ``Resources/models.json`` (data-driven: add an entry, get a choice)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MODELS_JSON = Path(__file__).resolve().parents[1] / "Resources" / "models.json"
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".pt", ".pth")


@dataclass(frozen=True)
class ModelChoice:
    id: str
    title: str
    description: str
    lung_model: str
    infection_model: str
    needs_torch: bool = True
    user_file: bool = False  # the user browses for a NAME.json / NAME.safetensors checkpoint


def load_catalog(path: str | Path = MODELS_JSON) -> list[ModelChoice]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    fields = ModelChoice.__dataclass_fields__
    choices = [ModelChoice(**{k: v for k, v in entry.items() if k in fields}) for entry in data["models"]]
    ids = [c.id for c in choices]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate model ids in {path}: {ids}")
    return choices


def find_choice(choices: list[ModelChoice], model_id: str) -> ModelChoice:
    for choice in choices:
        if choice.id == model_id:
            return choice
    raise KeyError(f"unknown model '{model_id}'; known: {', '.join(c.id for c in choices)}")


def checkpoint_task(checkpoint: str | Path) -> str:
    """``lungs`` or ``infection``: the task written in a checkpoint's model card (NAME.json beside it)."""
    path = Path(checkpoint)
    card = path if path.suffix == ".json" else path.with_suffix(".json")
    if not card.exists():
        raise FileNotFoundError(f"No model card '{card.name}' beside '{path.name}'; choose the NAME.json that "
                                "'lungseg train' wrote")
    task = json.loads(card.read_text(encoding="utf-8")).get("task")
    if task not in ("lungs", "infection"):
        raise ValueError(f"Model card '{card.name}' has task {task!r}; expected 'lungs' or 'infection'")
    return task


def resolve_models(choice: ModelChoice, checkpoint: str | Path | None = None) -> tuple[str, str]:
    """(lung_model, infection_model) to pass to ``segment_volume`` for a choice (and a user checkpoint)."""
    if not choice.user_file:
        return choice.lung_model, choice.infection_model
    if not checkpoint:
        raise ValueError("Choose a model file (NAME.json) for 'My trained model'")
    if checkpoint_task(checkpoint) == "lungs":
        return str(checkpoint), choice.infection_model
    return choice.lung_model, str(checkpoint)


def resolve_selection(choices: list[ModelChoice], model: str, checkpoint: str | Path | None = None
                      ) -> tuple[str, str]:
    """(lung_model, infection_model) for a catalog id (with the file of 'My trained model'), a model file path,
    or, as ``lungseg segment --model`` takes it, a shipped network name (``batch_segment.py --model``)."""
    if model in {choice.id for choice in choices}:
        return resolve_models(find_choice(choices, model), checkpoint or None)
    if Path(model).suffix in MODEL_FILE_SUFFIXES:
        return resolve_models(find_choice(choices, "checkpoint"), model)
    from lungseg_core.cli.segment import models_for_tasks  # lazy: the catalog loads before lungseg_core can

    return models_for_tasks(model, None, None)


def evaluation_task(choices: list[ModelChoice], task: str, model: str, checkpoint: str | Path | None = None) -> str:
    """The task the Evaluate panel scores. A user's model file is scored on its own task (its card's): with
    'all' the other task would score a shipped model in its place. Anything else on the task chosen ('all':
    both, as ``lungseg evaluate --task all``)."""
    own_file = _user_model_file(choices, model, checkpoint)
    if own_file is None:
        return task
    own_task = checkpoint_task(own_file)
    if task not in ("all", own_task):
        raise ValueError(f"The selected model '{Path(own_file).name}' segments {own_task}, not {task}: choose "
                         f"the task '{own_task}' (or both) to evaluate it")
    return own_task


def _user_model_file(choices: list[ModelChoice], model: str, checkpoint: str | Path | None) -> str | None:
    if model in {choice.id for choice in choices}:
        return str(checkpoint) if checkpoint and find_choice(choices, model).user_file else None
    return model if Path(model).suffix in MODEL_FILE_SUFFIXES else None
