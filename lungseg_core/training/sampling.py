"""From cases to in-memory slice stacks: preprocessing, non-informative slice removal, patient-level splits.

Whole preprocessed stacks stay in memory (images float16, labels uint8): the labelled data this project
trains on is small, and it makes epochs on a 2-core CPU cost only the network's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume
from lungseg_core.preprocessing.cropping import crop_volume, informative_slices, lung_bounding_box
from lungseg_core.preprocessing.slices import SliceSpec, prepare_labels, prepare_slices
from lungseg_core.training.augment import Augmenter, AugmentConfig
from lungseg_core.training.config import NO_INFORMATIVE_VALIDATION, NO_VALIDATION_PATIENT


@dataclass
class SliceStack:
    """Network-ready slices of several cases: images (N, C, S, S) float16, labels (N, S, S) uint8."""

    images: np.ndarray
    labels: np.ndarray
    case_index: np.ndarray  # (N,) which case each slice came from
    case_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def empty(cls, spec: SliceSpec) -> "SliceStack":
        size = spec.size
        return cls(np.zeros((0, spec.in_channels, size, size), np.float16), np.zeros((0, size, size), np.uint8),
                   np.zeros(0, np.int32), [])


def concat_stacks(stacks: list[SliceStack], spec: SliceSpec) -> SliceStack:
    stacks = [s for s in stacks if len(s)]
    if not stacks:
        return SliceStack.empty(spec)
    names: list[str] = []
    indices = []
    for stack in stacks:
        indices.append(stack.case_index + len(names))
        names.extend(stack.case_names)
    return SliceStack(np.concatenate([s.images for s in stacks]), np.concatenate([s.labels for s in stacks]),
                      np.concatenate(indices).astype(np.int32), names)


def reduce_labels(labels: np.ndarray, task: str, num_classes: int) -> np.ndarray:
    """Task labels -> the model's classes: with 2 classes every label becomes foreground 1 (binary model)."""
    labels = np.asarray(labels)
    if num_classes == 2:
        return (labels > 0).astype(np.uint8)
    if int(labels.max(initial=0)) >= num_classes:
        raise InputError(
            f"Labels go up to {int(labels.max())} but the model has {num_classes} classes ({task})",
            "set num_classes to the number of labels + 1 (background)",
        )
    return labels.astype(np.uint8)


def select_slices(labels: np.ndarray, drop_noninformative: bool, keep_empty_fraction: float,
                  max_slices: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the slices to train on.

    The seed method drops slices without any label (non-informative); a small random share of them is kept
    so the network also learns to predict nothing above and below the lungs. ``max_slices`` > 0 then takes
    an even sample along z (neighbouring slices are nearly identical).
    """
    depth = labels.shape[0]
    if not drop_noninformative:
        chosen = np.arange(depth)
    else:
        informative = informative_slices(labels)
        empty = np.flatnonzero(~informative)
        keep = empty[rng.random(empty.size) < keep_empty_fraction] if keep_empty_fraction > 0 else empty[:0]
        chosen = np.sort(np.concatenate([np.flatnonzero(informative), keep]))
    if max_slices and chosen.size > max_slices:
        chosen = chosen[np.linspace(0, chosen.size - 1, max_slices).round().astype(int)]
    return chosen


def crop_case_to_lungs(image: Volume, labels: np.ndarray, lungs: np.ndarray | None) -> tuple[Volume, np.ndarray]:
    """Seed 5's lung cropping: the case cut to its lungs' bounding box (+ margin); unchanged without lungs.
    Inference cuts the CT the same way (``Segmenter.lung_box``)."""
    if lungs is None or not np.any(lungs):
        return image, labels
    box = lung_bounding_box(lungs, image)
    return crop_volume(image, box), np.ascontiguousarray(labels[box])


def case_to_stack(image: Volume, labels: np.ndarray, spec: SliceSpec, name: str, *, task: str,
                  num_classes: int, drop_noninformative: bool = True, keep_empty_fraction: float = 0.0,
                  max_slices: int = 0, rng: np.random.Generator | None = None) -> SliceStack:
    """One case through the inference preprocessing (``prepare_slices`` / ``prepare_labels``) to a stack."""
    rng = rng if rng is not None else np.random.default_rng(0)
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise InputError(f"Case '{name}': labels {labels.shape} do not match the image {image.shape}",
                         "give labels on the image's grid")
    slices, layout = prepare_slices(image, spec)  # all slices: 2.5D context needs the neighbours
    target = prepare_labels(labels, layout)
    # axial slices in the canonical order of the stack
    chosen = select_slices(layout.view.forward(labels), drop_noninformative, keep_empty_fraction, max_slices, rng)
    return SliceStack(
        slices[chosen].astype(np.float16),
        reduce_labels(target[chosen], task, num_classes),
        np.zeros(chosen.size, np.int32),
        [name],
    )


# ------------------------------------------------------------------------------------------------------
# patient-level splits
# ------------------------------------------------------------------------------------------------------
def _shuffled_patients(patients: list[str], seed: int) -> list[str]:
    unique = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(unique))
    return [unique[i] for i in order]


def patient_split(patients: list[str], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, validation) indices of cases; all cases of one patient fall on the same side.

    At least one patient goes to validation when there are two or more patients and ``val_fraction`` > 0.
    """
    order = _shuffled_patients(patients, seed)
    n_val = int(round(len(order) * val_fraction))
    if val_fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    val_patients = set(order[:n_val])
    train = [i for i, p in enumerate(patients) if p not in val_patients]
    val = [i for i, p in enumerate(patients) if p in val_patients]
    return train, val


def kfold_split(patients: list[str], folds: int, fold: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, validation) case indices of fold ``fold`` of ``folds``, grouped by patient."""
    order = _shuffled_patients(patients, seed)
    if folds < 2 or folds > len(order):
        raise InputError(f"{folds}-fold cross-validation needs at least {folds} patients, found {len(order)}",
                         "lower 'folds' or add cases")
    val_patients = set(order[fold::folds])
    train = [i for i, p in enumerate(patients) if p not in val_patients]
    val = [i for i, p in enumerate(patients) if p in val_patients]
    return train, val


# ------------------------------------------------------------------------------------------------------
# torch dataset
# ------------------------------------------------------------------------------------------------------
class SliceDataset(torch.utils.data.Dataset):
    """Slices of a :class:`SliceStack` with optional augmentation.

    Each item's random choices come from (seed, epoch, index): identical whatever the number of loader
    workers or DDP ranks, and a resumed run repeats exactly what the uninterrupted run would have done.
    """

    def __init__(self, stack: SliceStack, augmentation: AugmentConfig | dict | None = None, seed: int = 0):
        self.stack = stack
        self.augment = augmentation if isinstance(augmentation, AugmentConfig) else AugmentConfig.from_dict(augmentation)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.stack.images[index].astype(np.float32)
        labels = self.stack.labels[index]
        if self.augment.enabled:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            image, labels = Augmenter(self.augment, rng)(image, labels)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))


# ------------------------------------------------------------------------------------------------------
# everything a config asks for: sources -> split -> (lesions) -> stacks
# ------------------------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    train: SliceStack
    val: SliceStack
    train_cases: list[str]
    val_cases: list[str]
    descriptions: list[str]
    notes: list[str]
    held_out_validation: bool = True  # False: "validation" scores the training slices (no held-out estimate)


@dataclass
class _Entry:
    source_index: int
    case: object  # datasets.CaseSource
    patient: str
    role: str
    host: bool  # a lungs-labelled lesion host in an infection config


def open_sources(config, say) -> tuple[list[_Entry], list[str], list[str]]:
    from lungseg_core.training.datasets import open_dataset

    entries, descriptions, notes = [], [], []
    for index, source in enumerate(config.data):
        root = config.resolve_root(source.root)
        if source.optional and root is not None and not root.exists():
            notes.append(f"optional data source {root} is missing: skipped")
            say(notes[-1])
            continue
        labels_task = source.labels or config.task
        dataset = open_dataset(root, source.layout, labels_task, **source.options)
        descriptions.append(dataset.describe())
        say(f"data[{index}]: {dataset.describe()}")
        for note in dataset.notes:  # which folders the reader chose, what it skipped
            notes.append(f"data[{index}]: {note}")
            say(notes[-1])
        host = config.task == "infection" and labels_task == "lungs"
        for case in dataset.sources:
            # patients of different sources never coincide, even when names do
            entries.append(_Entry(index, case, f"{index}:{case.patient}", source.role, host))
    if not entries:
        raise InputError("No training cases found in any data source", "check the 'data' entries of the config")
    return entries, descriptions, notes


def split_entries(entries: list, config) -> tuple[list, list, list]:
    """(train, val, test): the config's patient-level split of the 'split' entries plus fixed roles.

    With ``folds`` > 1 the held-out fold is the test set, which training never reads: the validation
    patients that pick the best epoch and stop early come from the training folds (``val_fraction`` of
    them), so a cross-validation score is not inflated by choosing the epoch on the cases it scores.
    ``val`` is empty when no patient is left for validation (``val_fraction`` 0 or too few patients).
    """
    pool = [e for e in entries if e.role == "split"]
    patients = [e.patient for e in pool]
    test_idx: list[int] = []
    train_idx = list(range(len(pool)))
    split_seed = config.seed if config.split_seed is None else config.split_seed
    if config.folds > 1:
        train_idx, test_idx = kfold_split(patients, config.folds, config.fold, split_seed)
    inner_train, inner_val = patient_split([patients[i] for i in train_idx], config.val_fraction, split_seed)
    train = [pool[train_idx[i]] for i in inner_train] + [e for e in entries if e.role == "train"]
    val = [pool[train_idx[i]] for i in inner_val] + [e for e in entries if e.role == "val"]
    test = [pool[i] for i in test_idx]
    if val and not train:
        raise InputError("Every case went to validation", "lower val_fraction or add training cases")
    return train, val, test


def _lesion_spec(config):
    from lungseg_core.synthetic.lesions import LesionSpec

    options = {k: v for k, v in config.synthetic_lesions.items() if k not in ("copies", "keep_original")}
    for key in ("count", "diameter_mm"):
        if key in options:
            options[key] = tuple(options[key])
    if "kinds" in options:
        options["kinds"] = tuple(options["kinds"])
    try:
        return LesionSpec(**options)
    except TypeError as exc:
        raise InputError(f"Bad synthetic_lesions options: {exc}", "use copies, keep_original, count, kinds, diameter_mm, irregularity, texture_hu, placement") from None


def _variants(case, entry: _Entry, config, training: bool, rng: np.random.Generator, not_hu: list[str]):
    """(name, image, labels) to slice: the case itself and/or copies with synthetic lesions.

    Lesions are inserted in HU only; a case with display intensities (e.g. the 0-255 Radiopaedia cases of
    COVID-19-CT-Seg) gets none and is listed in ``not_hu``: as a lesion host it is skipped, in a lung config
    it is kept without lesion copies. One such case must not stop a run that has HU cases.
    """
    from lungseg_core.synthetic.lesions import insert_lesions

    copies = int(config.synthetic_lesions.get("copies", 0))
    lungs = case.lungs  # every reader sets it for lung cases
    wants_lesions = entry.host or (copies and config.task == "lungs" and lungs is not None)
    if wants_lesions and case.image.intensity != "hu":
        not_hu.append(case.name)
        if entry.host:
            return
    if entry.host:
        # lung-labelled host: the inserted lesions' masks are the infection labels (validation gets them too)
        for copy in range(max(copies, 1)):
            image, infection = insert_lesions(case.image, case.labels, _lesion_spec(config), rng)
            yield f"{case.name}+lesions{copy}", image, infection, case.labels
        return
    if not training or config.synthetic_lesions.get("keep_original", True):
        yield case.name, case.image, case.labels, lungs
    if wants_lesions and case.image.intensity == "hu":
        # validation gets lesion copies too, so the best epoch is the one that keeps consolidated lung
        for copy in range(copies):
            image, _ = insert_lesions(case.image, lungs, _lesion_spec(config), rng)
            yield f"{case.name}+lesions{copy}", image, case.labels, lungs  # lung labels stay the same


def _maybe_thicken(name, image, labels, lungs, options: dict, rng: np.random.Generator):
    """With probability ``options['probability']``, the variant as a thick-slice CT of a random thickness."""
    from lungseg_core.synthetic.thick_slices import slab_factor, thicken_labels, thicken_slices

    if not options or image.is_2d or rng.random() >= float(options.get("probability", 0.0)):
        return name, image, labels, lungs
    factor = slab_factor(image.spacing[2], rng.uniform(*options.get("thickness_mm", (5.0, 10.0))))
    if factor <= 1 or image.shape[0] < 2 * factor:
        return name, image, labels, lungs
    thick, thick_labels = thicken_slices(image, labels, factor)
    thick_lungs = None if lungs is None else thicken_labels(lungs, factor)
    return f"{name}+thick{factor}", thick, thick_labels, thick_lungs


def transposed(stack: SliceStack) -> SliceStack:
    """The stack's slices with rows and columns swapped (images and labels alike)."""
    return SliceStack(np.ascontiguousarray(stack.images.swapaxes(-1, -2)),
                      np.ascontiguousarray(stack.labels.swapaxes(-1, -2)), stack.case_index, stack.case_names)


def _cropped_to_lungs(image: Volume, labels: np.ndarray, lungs: np.ndarray | None, name: str,
                      source_index: int) -> tuple[Volume, np.ndarray]:
    """crop_to_lungs for one case. Without lung labels it is refused, not skipped: the model card says the
    network saw lung-cropped slices, and inference crops accordingly."""
    if lungs is None:
        raise InputError(f"crop_to_lungs is set for data[{source_index}], but its case '{name}' has no lung labels to crop to",
                         "give that source lung labels (a lungs/ mask folder, lung values in dataset.json, lung segments) "
                         "or set crop_to_lungs to false")
    return crop_case_to_lungs(image, labels, lungs)


def _stack_entries(entries: list, config, spec: SliceSpec, training: bool, rng: np.random.Generator,
                   not_hu: list[str]) -> tuple[SliceStack, list[str]]:
    stacks, names = [], []
    for entry in entries:
        case = entry.case.load()
        source = config.data[entry.source_index]
        crop = config.crop_to_lungs if source.crop_to_lungs is None else source.crop_to_lungs
        for name, image, labels, lungs in _variants(case, entry, config, training, rng, not_hu):
            if training and image.intensity == "hu":
                name, image, labels, lungs = _maybe_thicken(name, image, labels, lungs, config.thick_slices, rng)
            if crop:
                image, labels = _cropped_to_lungs(image, labels, lungs, name, entry.source_index)
            stack = case_to_stack(
                image, labels, spec, name, task=config.task, num_classes=config.num_classes,
                drop_noninformative=config.drop_noninformative,
                keep_empty_fraction=config.keep_empty_fraction if training else 0.0,
                max_slices=config.max_slices_per_case, rng=rng,
            )
            stacks.append(transposed(stack) if source.transpose else stack)
            names.append(name)
    return concat_stacks(stacks, spec), names


def _not_hu_note(names: list[str], task: str) -> str:
    from lungseg_core.text import shown_list

    what = "skipped as lesion hosts" if task == "infection" else "kept without synthetic lesion copies"
    return (f"{len(names)} case(s) with display intensities (0-255), not HU, {what}: synthetic lesions need HU "
            f"({shown_list(names)})")


# the two notes that say the run has no held-out validation: its scores are on training data. They are logged,
# and the Slicer training panel turns a log line holding one of them into a warning (import them, do not copy)


def build_training_data(config, say=lambda _msg: None) -> TrainingData:
    """Read every data source of ``config``, split by patient, and build the train/validation stacks."""
    entries, descriptions, notes = open_sources(config, say)
    train_entries, val_entries, test_entries = split_entries(entries, config)
    held_out = bool(val_entries)
    note = None
    if not held_out:
        val_entries = train_entries
        note = NO_VALIDATION_PATIENT
    if test_entries:
        note = (f"fold {config.fold} of {config.folds}: {len(test_entries)} test case(s) held out for scoring, "
                f"never read here" + (f"; {note}" if note else ""))
    if note:
        notes.append(note)
        say(note)
    spec = config.spec()
    rng = np.random.default_rng(config.seed)
    not_hu: list[str] = []
    train, train_names = _stack_entries(train_entries, config, spec, True, rng, not_hu)
    val, val_names = _stack_entries(val_entries, config, spec, False, np.random.default_rng(config.seed + 1), not_hu)
    if not_hu:
        notes.append(_not_hu_note(sorted(set(not_hu)), config.task))
        say(notes[-1])
    if len(train) == 0:
        raise InputError("No training slices left after removing non-informative slices",
                         "check that the labels are not empty, or set drop_noninformative to false")
    if len(val) == 0:
        val, held_out = train, False
        notes.append(NO_INFORMATIVE_VALIDATION)
        say(notes[-1])  # logged like every other note: the Slicer panel warns on these lines (NO_HELD_OUT_NOTES)
    return TrainingData(train, val, train_names, val_names, descriptions, notes, held_out)
