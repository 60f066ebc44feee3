"""Training configuration: one JSON file per recipe, validated up front with errors that say what to fix.

Relative data paths are relative to the config file's folder; ``$VARS`` and ``~`` are expanded. See
docs/training.md for every key.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lungseg_core.errors import InputError, LungSegError
from lungseg_core.labels import TASKS

OPTIMIZERS = ("adam", "adamw", "sgd")
# the keyword arguments of torch's ReduceLROnPlateau and CosineAnnealingLR a config may set (plateau's mode follows
# ``monitor``), and what a config without scheduler_kwargs gets. Here, not read off torch, so that a config is
# checked before torch is imported and before minutes of data loading.
SCHEDULER_KEYS = {"plateau": ("factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"),
                  "cosine": ("T_max", "eta_min"), "none": ()}
SCHEDULER_DEFAULTS = {"plateau": {"factor": 0.5, "patience": 2}, "cosine": {}, "none": {}}
SCHEDULERS = tuple(SCHEDULER_KEYS)
MONITORS = ("val_loss", "val_dice", "val_dice_any")
ROLES = ("split", "train", "val")


# The trainer's notes when the best epoch is chosen on training data; the Slicer panel turns the log lines holding
# them into a warning. Here, not in sampling.py, so that the panel reads them without importing torch.
NO_VALIDATION_PATIENT = "no validation patient: validating on the training cases (no held-out estimate)"
NO_INFORMATIVE_VALIDATION = "no informative validation slices: validating on the training slices"
NO_HELD_OUT_NOTES = (NO_VALIDATION_PATIENT, NO_INFORMATIVE_VALIDATION)

@dataclass
class DataSource:
    """One dataset folder (or generated phantoms) feeding training.

    ``labels`` says which task the source's labels are for (default: the config's task). A ``lungs``
    source in an ``infection`` config is a lesion host: synthetic lesions are inserted and their masks
    become the labels. ``role`` puts the whole source in training or validation instead of splitting it.
    ``crop_to_lungs`` (default: the config's) and ``transpose`` make a source's slices look like another's:
    CT lesion hosts cut to their lungs and transposed look like the lung-cropped 2D slice images of
    COVID-SemiSeg and MedSeg, which are stored transposed (anterior on the left, spine on the right).
    """

    root: str | None = None
    layout: str = "auto"
    labels: str | None = None
    role: str = "split"
    optional: bool = False  # skip with a note when the folder is missing instead of failing
    options: dict = field(default_factory=dict)
    crop_to_lungs: bool | None = None
    transpose: bool = False


@dataclass
class TrainConfig:
    name: str
    task: str
    architecture: str
    data: list[DataSource]
    num_classes: int = 3
    architecture_kwargs: dict = field(default_factory=dict)
    slice_spec: dict = field(default_factory=lambda: {"size": 256, "context": 1})
    loss: str = "dice_ce"
    loss_kwargs: dict = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    scheduler_kwargs: dict | None = None  # None: the scheduler's defaults (SCHEDULER_DEFAULTS)
    epochs: int = 50
    batch_size: int = 8
    early_stopping_patience: int = 5  # epochs without improvement of ``monitor``; 0 = off
    min_delta: float = 1e-4
    monitor: str = "val_loss"  # best checkpoint and early stopping follow this
    val_fraction: float = 0.2
    folds: int = 0  # k-fold cross-validation when > 1; ``fold`` picks the validation fold
    fold: int = 0
    seed: int = 0
    # seed of the patient-level split and the folds; None: ``seed``. Fix it to compare or ensemble runs of several
    # training seeds on the same folds.
    split_seed: int | None = None
    drop_noninformative: bool = True  # seed method: drop slices without any label
    keep_empty_fraction: float = 0.1  # ...but keep this share of them so the model sees negatives
    max_slices_per_case: int = 0  # 0 = all; else an even sample of the informative slices
    crop_to_lungs: bool = False  # seed 5: crop each case to its lungs (+ margin) before slicing
    # lung models only: at inference the network adds dense lung to the classical lungs instead of replacing them
    combine_with_classical: bool = False
    # inference averages each slice with its left-right mirror image (the card's ``test_time_mirror``)
    test_time_mirror: bool = False
    augmentation: dict = field(default_factory=dict)
    synthetic_lesions: dict = field(default_factory=dict)  # {"copies": n, "count": [a, b], "kinds": [...]}
    # fine-tuning: start from this model's weights (a shipped model name or a model card path), same architecture
    init_weights: str = ""
    # training volumes made thick-slice at random: {"probability": 0.4, "thickness_mm": [5, 10]}
    thick_slices: dict = field(default_factory=dict)
    num_workers: int = 0
    amp: bool = True  # mixed precision, only ever used on CUDA
    grad_clip: float = 0.0
    description: str = ""
    source_path: str | None = None  # where the config was read from (filled in by load_config)

    def __post_init__(self) -> None:
        # without a scheduler its keys mean nothing: cleared, so that a run saved with the plateau defaults that
        # every config once got still resumes; an unknown scheduler is refused by validate()
        if self.scheduler_kwargs is None or self.scheduler == "none":
            self.scheduler_kwargs = dict(SCHEDULER_DEFAULTS.get(self.scheduler, {}))

    # ------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, source: str | Path | None = None) -> "TrainConfig":
        where = f" in '{source}'" if source else ""
        if not isinstance(values, dict):
            raise InputError(f"The training config{where} is not a JSON object", "write it as {\"key\": value, ...}")
        values = {k: v for k, v in values.items() if not k.startswith("_")}  # "_comment" keys are notes
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"Unknown config key(s) {', '.join(unknown)}{where}", f"valid keys are: {', '.join(sorted(known))}")
        missing = [k for k in ("name", "task", "architecture", "data") if k not in values]
        if missing:
            raise InputError(f"The training config{where} lacks {', '.join(missing)}", "add them (see docs/training.md)")
        values = dict(values)
        values["data"] = [_data_source(d, i, where) for i, d in enumerate(_as_list(values["data"], where))]
        config = cls(**values)
        if source is not None:
            config.source_path = str(source)
        config.validate(where)
        return config

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source_path")
        return d

    def validate(self, where: str = "") -> None:
        _choice("task", self.task, TASKS, where)
        _architecture(self.architecture, where)
        _choice("optimizer", self.optimizer, OPTIMIZERS, where)
        _choice("scheduler", self.scheduler, SCHEDULERS, where)
        _choice("monitor", self.monitor, MONITORS, where)
        for key in ("epochs", "batch_size"):
            _number(key, getattr(self, key), where, minimum=1, integer=True)
        for key in ("early_stopping_patience", "max_slices_per_case", "num_workers", "folds", "fold", "seed"):
            _number(key, getattr(self, key), where, minimum=0, integer=True)
        if self.split_seed is not None:
            _number("split_seed", self.split_seed, where, minimum=0, integer=True)
        _number("num_classes", self.num_classes, where, minimum=2, integer=True)
        _number("lr", self.lr, where, minimum=0, exclusive=True)
        for key in ("momentum", "weight_decay", "min_delta", "grad_clip"):
            _number(key, getattr(self, key), where, minimum=0)
        for key in ("val_fraction", "keep_empty_fraction"):
            _number(key, getattr(self, key), where, minimum=0, maximum=1)
        if self.folds > 1 and self.fold >= self.folds:
            raise InputError(f"fold {self.fold} does not exist with folds = {self.folds}{where}", f"use fold 0..{self.folds - 1}")
        for key in ("architecture_kwargs", "slice_spec", "loss_kwargs", "scheduler_kwargs", "augmentation", "synthetic_lesions", "thick_slices"):
            if not isinstance(getattr(self, key), dict):
                raise InputError(f"Config key '{key}'{where} must be a JSON object", "write it as {...}")
        _scheduler_keys(self.scheduler, self.scheduler_kwargs, where)
        if self.combine_with_classical and (self.task != "lungs" or self.num_classes != 2):
            raise InputError(f"combine_with_classical{where} needs a one-class lung model (task 'lungs', num_classes 2)",
                             "remove combine_with_classical or train a one-class lung model")
        unknown = sorted(set(self.thick_slices) - {"probability", "thickness_mm"})
        if unknown:
            raise InputError(f"Unknown thick_slices key(s) {', '.join(unknown)}{where}", "use probability and thickness_mm")
        self.spec()  # SliceSpec checks size, context, window, enhancement
        from lungseg_core.training.augment import AugmentConfig
        from lungseg_core.training.losses import LOSSES

        AugmentConfig.from_dict(self.augmentation)
        _choice("loss", self.loss, tuple(LOSSES), where)
        if not self.data:
            raise InputError(f"The config{where} lists no data sources", "add at least one entry to 'data'")

    def spec(self):
        from lungseg_core.preprocessing.slices import SliceSpec

        unknown = sorted(set(self.slice_spec) - {"size", "context", "window", "enhance", "crop_to_body"})
        if unknown:
            raise InputError(f"Unknown slice_spec key(s) {', '.join(unknown)}", "use size, context, window, enhance, crop_to_body")
        try:
            return SliceSpec.from_dict(self.slice_spec)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Invalid slice_spec: {exc}", "fix slice_spec in the config") from None

    @property
    def in_channels(self) -> int:
        return self.spec().in_channels

    def resolve_root(self, root: str | None) -> Path | None:
        """A data root with variables expanded, relative to the config file's folder."""
        if root is None:
            return None
        path = Path(os.path.expanduser(os.path.expandvars(root)))
        if not path.is_absolute() and self.source_path:
            path = self.folder() / path
        return path

    def folder(self) -> Path | None:
        """The folder relative data roots start from: the config file's (None: the current folder)."""
        return Path(self.source_path).resolve().parent if self.source_path else None

    def with_resolved_roots(self) -> "TrainConfig":
        """This config with every data root absolute, as a run saves it: the run's config.json then reads the
        same data from the run folder as the recipe did from its own folder."""
        data = [replace(source, root=absolute_root(source.root, self.folder())) if source.root is not None else source
                for source in self.data]
        return replace(self, data=data)

    def missing_optional_sources(self) -> list[int]:
        """Indices of the ``optional`` sources whose folder is missing (skipped by the data loading)."""
        return [index for index, source in enumerate(self.data)
                if source.optional and source.root is not None and not self.resolve_root(source.root).exists()]


def absolute_root(root: str, folder: Path | None) -> str:
    """``root`` with variables expanded, relative to ``folder`` (None: the current folder), made absolute."""
    path = Path(os.path.expanduser(os.path.expandvars(root)))
    return str((folder / path if folder is not None and not path.is_absolute() else path).resolve())


def _as_list(value: Any, where: str) -> list:
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise InputError(f"Config key 'data'{where} must be a list of data sources", "write \"data\": [{\"root\": ...}]")
    return value


def _data_source(values: Any, index: int, where: str) -> DataSource:
    if isinstance(values, str):
        values = {"root": values}
    if not isinstance(values, dict):
        raise InputError(f"data[{index}]{where} must be a folder path or an object", "write {\"root\": \"folder\"}")
    known = {f.name for f in fields(DataSource)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"Unknown key(s) {', '.join(unknown)} in data[{index}]{where}", f"valid keys are: {', '.join(sorted(known))}")
    source = DataSource(**values)
    _choice(f"data[{index}].role", source.role, ROLES, where)
    if source.labels is not None:
        _choice(f"data[{index}].labels", source.labels, TASKS, where)
    if source.root is None and source.layout != "phantom":
        raise InputError(f"data[{index}]{where} has no 'root' folder", "give the dataset folder (or layout 'phantom')")
    return source


def trainable_architectures() -> tuple[str, ...]:
    """The registry's 2D networks: the only ones this trainer can train, as it feeds (N, C, H, W) slices."""
    from lungseg_core.models.registry import ARCHITECTURES

    return tuple(sorted(name for name, info in ARCHITECTURES.items() if info.spatial_dims == 2))


def _architecture(name: Any, where: str) -> None:
    """Refuse unknown and 3D architectures here, before any data is read: the trainer cuts 2D (2.5D) slices,
    so a 3D network would otherwise fail on its first batch with a raw convolution shape error."""
    from lungseg_core.models.registry import ARCHITECTURES

    info = ARCHITECTURES.get(name) if isinstance(name, str) else None
    if info is not None and info.spatial_dims != 2:
        raise InputError(
            f"Architecture '{name}'{where} is a {info.spatial_dims}D patch network: `lungseg train` trains only 2D "
            "networks, on axial slices (2.5D with slice_spec.context)",
            f"train one of: {', '.join(trainable_architectures())}; a {name} trained elsewhere is used at inference "
            f"as a model package (zoo.save_model_package, card with \"spatial_dims\": {info.spatial_dims}): "
            "lungseg segment --lung-model CARD.json",
        )
    _choice("architecture", name, trainable_architectures(), where)


def _choice(key: str, value: Any, choices: tuple, where: str) -> None:
    if value not in choices:
        raise InputError(f"Config key '{key}' is '{value}'{where}", f"use one of: {', '.join(map(str, choices))}")


def _scheduler_keys(scheduler: str, kwargs: dict, where: str) -> None:
    """Refuse scheduler_kwargs the scheduler does not take, e.g. plateau's left after ``--set scheduler=cosine``."""
    unknown = sorted(set(kwargs) - set(SCHEDULER_KEYS[scheduler]))
    if unknown:
        allowed = ", ".join(SCHEDULER_KEYS[scheduler]) or "no keys"
        raise InputError(f"scheduler_kwargs key(s) {', '.join(unknown)}{where} do not apply to scheduler '{scheduler}'",
                         f"'{scheduler}' takes {allowed}; on the command line replace them: "
                         "--set 'scheduler_kwargs={}'")


def _number(key: str, value: Any, where: str, minimum: float | None = None, maximum: float | None = None,
            integer: bool = False, exclusive: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "a whole number" if integer else "a number"
        raise InputError(f"Config key '{key}' must be {kind}, got {value!r}{where}", f"write {key} as {kind}")
    if minimum is not None and (value < minimum or (exclusive and value == minimum)):
        raise InputError(f"Config key '{key}' = {value}{where} is too small", f"use a value {'>' if exclusive else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise InputError(f"Config key '{key}' = {value}{where} is too large", f"use a value <= {maximum}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a JSON config; ``overrides`` ("key" or "nested.key" -> value) apply first."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Config file '{path}' does not exist", "check the path (examples are in configs/)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"Config '{path.name}' is not valid JSON (line {exc.lineno}: {exc.msg})", "fix the JSON syntax") from None
    values = apply_overrides(values, overrides or {})
    return TrainConfig.from_dict(values, source=path)


def apply_overrides(values: dict, overrides: dict[str, Any]) -> dict:
    """A copy of ``values`` with dotted keys set: {"slice_spec.size": 64, "epochs": 1}."""
    values = copy.deepcopy(values)
    for dotted, value in overrides.items():
        target = values
        *parents, last = dotted.split(".")
        for part in parents:
            if part.isdigit() and isinstance(target, list):
                target = target[int(part)]
                continue
            target = target.setdefault(part, {})
            if not isinstance(target, (dict, list)):
                raise InputError(f"Cannot set '{dotted}': '{part}' is not an object", "override a nested key of an object")
        if isinstance(target, list) and last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is JSON when it parses, else a plain string."""
    if "=" not in text:
        raise InputError(f"Override '{text}' is not KEY=VALUE", "write e.g. --set epochs=5 or --set slice_spec.size=128")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


# ------------------------------------------------------------------------------------------------------
# a run's saved config against this one: `lungseg train --resume` and `lungseg crossval` reruns reuse a run only
# when it was trained with this config, since its checkpoint, best epoch and split belong to the saved one
# ------------------------------------------------------------------------------------------------------
# keys that change neither the trained model nor its scores: a rerun or a resume may set them otherwise
NOT_COMPARED = ("num_workers", "description")
_ABSENT = object()


def config_differences(saved, wanted, key: str = "") -> list[str]:
    """``"KEY OLD → NEW"`` for every (dotted) key whose value differs between two config dicts (as JSON)."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        return [d for k in list(saved) + [k for k in wanted if k not in saved]
                for d in config_differences(saved.get(k, _ABSENT), wanted.get(k, _ABSENT), f"{key}.{k}" if key else k)]
    if isinstance(saved, list) and isinstance(wanted, list) and len(saved) == len(wanted):
        return [d for i, (a, b) in enumerate(zip(saved, wanted)) for d in config_differences(a, b, f"{key}.{i}")]
    return [] if saved == wanted else [f"{key} {_shown(saved)} → {_shown(wanted)}"]


def _shown(value, width: int = 60) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def saved_config_differences(saved: dict, config: TrainConfig, may_differ: tuple[str, ...] = ()) -> list[str]:
    """The differences between a run's saved config (``config.json``, or the one in its checkpoint) and
    ``config``, leaving out :data:`NOT_COMPARED` and ``may_differ`` (top-level keys).

    Data roots are compared as the folders they name, not as written: the same relative root read from two
    config files in different folders is other data. Runs save their roots absolute; a relative root saved by an
    older version is taken relative to ``config``'s folder, as those versions compared it (same text, same
    folder)."""
    ignored = NOT_COMPARED + tuple(may_differ)
    saved = _roots_resolved(with_defaults(saved), config.folder())
    return config_differences(_without(saved, ignored), _without(config_json(config.with_resolved_roots()), ignored))


def saved_roots_are_relative(saved: dict) -> bool:
    """Whether a saved config holds a relative data root (saved before runs stored them absolute)."""
    data = saved.get("data")
    return isinstance(data, list) and any(
        isinstance(source, dict) and isinstance(source.get("root"), str)
        and not Path(os.path.expanduser(os.path.expandvars(source["root"]))).is_absolute() for source in data)


def _roots_resolved(values: dict, folder: Path | None) -> dict:
    data = values.get("data")
    if not isinstance(data, list):
        return values
    resolved = [{**source, "root": absolute_root(source["root"], folder)}
                if isinstance(source, dict) and isinstance(source.get("root"), str) else source for source in data]
    return {**values, "data": resolved}


def listed_differences(differences: list[str], limit: int = 6) -> str:
    """The first ``limit`` differences for a one-line message, and how many more there are."""
    from lungseg_core.text import shown_list

    return shown_list(differences, limit)


def config_json(config: TrainConfig) -> dict:
    """``config`` as it is saved (a JSON round trip: tuples become lists, as in a file read back)."""
    return json.loads(json.dumps(config.to_dict()))


def _without(values: dict, keys: tuple[str, ...]) -> dict:
    return {key: value for key, value in values.items() if key not in keys}


def with_defaults(saved: dict) -> dict:
    """A saved config with the keys added to the config since then at their defaults, which keep the old
    behaviour: a run saved by an older version is not another config for lack of them."""
    try:
        return config_json(TrainConfig.from_dict(saved))
    except LungSegError:  # a key this version no longer knows: compared as saved, so it shows as a difference
        return saved
