"""Find prediction and reference files in two folders and pair them by case name.

Prediction folders hold ``lungseg segment`` outputs: ``CASE_lungs.nii.gz``, ``CASE_infection.nii.gz`` and
``CASE.seg.nrrd``. Reference folders may hold the same task-suffixed labelmaps, a Slicer ``CASE.seg.nrrd``,
a plain labelmap ``CASE.nii.gz`` / ``CASE.nrrd`` / ... or a 2D ``CASE.png`` mask (0/255 binary or palette
indices). Values are read in the lungseg convention (lungs 1 right / 2 left, infection 1 GGO / 2 consolidation),
except in folders of binary masks (decided once per folder by ``evaluate.reference_conventions``).

Names match exactly first; what is left matches on a normalised key (lower case, without a trailing
nnU-Net channel ``_0000`` or words such as ``_mask``, ``_gt``, ``_label``), when that key is unique on both
sides, so ``case_001_0000_lungs.nii.gz`` pairs with ``labelsTr/case_001.nii.gz``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lungseg_core.errors import InputError
from lungseg_core.labels import TASKS

SEG_SUFFIX = ".seg.nrrd"
# generic labelmaps, in order of preference when one case has several
LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png")
_NAME_NOISE = re.compile(
    r"([_\-.](0000|ct|image|img|mask|masks|seg|segmentation|label|labels|labelmap|gt|ref|reference))+$"
)


@dataclass
class CaseFiles:
    """The files of one case in one folder."""

    case: str
    task_files: dict[str, Path] = field(default_factory=dict)  # "lungs"/"infection" -> CASE_<task>.*
    segmentation: Path | None = None  # CASE.seg.nrrd
    labelmap: Path | None = None  # CASE.nii.gz / CASE.nrrd / CASE.png: task not named in the file

    def is_empty(self) -> bool:
        return not (self.task_files or self.segmentation or self.labelmap)


@dataclass
class MatchedCase:
    """One case present in both folders (names may differ by normalisation)."""

    case: str  # the prediction's name, used in result tables
    pred: CaseFiles
    ref: CaseFiles


@dataclass
class Matching:
    cases: list[MatchedCase]
    unmatched_predictions: list[str]
    unmatched_references: list[str]


def normalized_case_key(name: str) -> str:
    """A name with its case, channel suffix and mask-ish trailing words removed, for loose matching."""
    key = name.lower().strip()
    return _NAME_NOISE.sub("", key) or key


def _split_suffix(name: str, suffixes: tuple[str, ...]) -> tuple[str, str] | None:
    lower = name.lower()
    for suffix in suffixes:
        if lower.endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


def _task_of(stem: str) -> tuple[str, str] | None:
    for task in TASKS:
        if stem.lower().endswith(f"_{task}"):
            return stem[: -len(task) - 1], task
    return None


def is_plain_labelmap(path: Path) -> bool:
    """A labelmap whose name does not say its task (``CASE.nii.gz``, not ``CASE_lungs.nii.gz`` or ``CASE.seg.nrrd``):
    its values follow whatever convention the data set it came from has."""
    if path.name.lower().endswith(SEG_SUFFIX):
        return False
    split = _split_suffix(path.name, LABELMAP_SUFFIXES)
    return split is not None and _task_of(split[0]) is None


def index_folder(folder: str | Path, role: str = "reference") -> dict[str, CaseFiles]:
    """Case name -> its files in ``folder`` (not recursive).

    ``role`` "prediction" only takes ``lungseg segment`` outputs (task-suffixed labelmaps and
    ``.seg.nrrd``), so reports, CSVs and figures next to them are ignored; "reference" also takes plain
    labelmaps and PNG masks.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{role.capitalize()} folder '{folder}' does not exist or is not a folder", "check the path")
    cases: dict[str, CaseFiles] = {}
    generic_rank: dict[str, int] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name.lower().endswith(SEG_SUFFIX):
            name = path.name[: -len(SEG_SUFFIX)]
            cases.setdefault(name, CaseFiles(name)).segmentation = path
            continue
        split = _split_suffix(path.name, LABELMAP_SUFFIXES)
        if split is None:
            continue
        stem, suffix = split
        tasked = _task_of(stem)
        if tasked is not None:
            name, task = tasked
            cases.setdefault(name, CaseFiles(name)).task_files.setdefault(task, path)
        elif role == "reference":
            rank = LABELMAP_SUFFIXES.index(suffix)
            if rank < generic_rank.get(stem, len(LABELMAP_SUFFIXES)):
                cases.setdefault(stem, CaseFiles(stem)).labelmap = path
                generic_rank[stem] = rank
    return {name: files for name, files in cases.items() if not files.is_empty()}


def match_cases(predictions: dict[str, CaseFiles], references: dict[str, CaseFiles]) -> Matching:
    """Pair cases by exact name, then by a normalised name that is unique on both sides."""
    pairs = {name: name for name in predictions if name in references}
    left_pred = [n for n in predictions if n not in pairs]
    left_ref = [n for n in references if n not in pairs.values()]
    pred_keys = _unique_keys(left_pred)
    ref_keys = _unique_keys(left_ref)
    for key, pred_name in pred_keys.items():
        if key in ref_keys:
            pairs[pred_name] = ref_keys[key]
    matched_refs = set(pairs.values())
    return Matching(
        cases=[MatchedCase(p, predictions[p], references[r]) for p, r in sorted(pairs.items())],
        unmatched_predictions=sorted(n for n in predictions if n not in pairs),
        unmatched_references=sorted(n for n in references if n not in matched_refs),
    )


def _unique_keys(names: list[str]) -> dict[str, str]:
    """Normalised key -> name, leaving out keys that two names share (ambiguous, so never guessed)."""
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(normalized_case_key(name), []).append(name)
    return {key: group[0] for key, group in by_key.items() if len(group) == 1}


def match_folders(pred_dir: str | Path, ref_dir: str | Path) -> Matching:
    """Index both folders and pair their cases; :class:`InputError` when nothing can be compared."""
    predictions = index_folder(pred_dir, "prediction")
    references = index_folder(ref_dir, "reference")
    if not predictions:
        raise InputError(
            f"No predictions found in '{pred_dir}' "
            "(expected CASE_lungs.nii.gz, CASE_infection.nii.gz or CASE.seg.nrrd)",
            "point --pred at a 'lungseg segment' output folder",
        )
    if not references:
        raise InputError(
            f"No reference labelmaps found in '{ref_dir}' (.nii.gz, .nrrd, .seg.nrrd, .mha or .png masks)",
            "point --ref at the folder holding the reference segmentations",
        )
    matching = match_cases(predictions, references)
    if not matching.cases:
        raise InputError(
            f"No case names match between predictions ({_examples(predictions)}) "
            f"and references ({_examples(references)})",
            "name references like the input CTs (CASE.nii.gz or CASE_lungs.nii.gz for prediction CASE_lungs.nii.gz)",
        )
    return matching


def _examples(cases: dict[str, CaseFiles], limit: int = 3) -> str:
    names = sorted(cases)
    more = f", ... {len(names)} in all" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
