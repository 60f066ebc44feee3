"""Readers for the labelled dataset layouts users have, all giving cases in the lungseg label convention.

``open_dataset(root, layout="auto", task="lungs")`` finds the cases of one folder; iterating the result
loads them one at a time as :class:`Case` (which unpacks as ``image, labels = case``). Labels come back in
our convention for ``task``: lungs 1 = right, 2 = left (decided from patient geometry), infection 1 = GGO,
2 = consolidation. Supported layouts (see docs/training.md):

- ``covid19_ct_seg``: COVID-19-CT-Seg (``metadata.csv`` with ct_scan / lung_mask / infection_mask /
  lung_and_infection_mask columns); the set has no GGO/consolidation split, so all infection becomes GGO (1);
- ``medseg``: MedSeg ``tr_im`` / ``tr_mask`` / ``tr_lungmasks_updated`` (each slice is its own case) and
  the Radiopaedia volumes ``rp_im/`` / ``rp_msk/`` / ``rp_lung_msk/``;
- ``nnunet``: ``imagesTr/CASE_0000.nii.gz`` + ``labelsTr/CASE.nii.gz`` with label names in ``dataset.json``;
- ``folders``: ``images/`` beside one or more mask folders (2D PNG/JPG or 3D volumes, matched by name);
- ``slicer``: ``CASE.nrrd`` (or .nii.gz ...) beside ``CASE.seg.nrrd``;
- ``phantom``: synthetic chest phantoms with exact labels (no files; for smoke tests and demos).

A label value a source does not define is refused, never dropped or clipped: a silently wrong class trains
a wrong model. Which files and folders a reader chose, and which images it skipped, are in ``Dataset.notes``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.readers import (IMAGE_SUFFIXES, MAX_LABEL_VALUE, VOLUME_SUFFIXES, case_name, present_values,
                                     read_labelmap, read_volume)
from lungseg_core.io.volume import Volume, patient_left_score, sides_swapped
from lungseg_core.labels import CONSOLIDATION, GGO, INFECTION_LABELS, LEFT_LUNG, LUNG_LABELS, RIGHT_LUNG
from lungseg_core.labels import TASKS
from lungseg_core.text import shown_list

LAYOUT_HELP = {
    "covid19_ct_seg": "COVID-19-CT-Seg: metadata.csv with ct_scan, lung_mask, infection_mask columns",
    "medseg": "MedSeg: tr_im.nii.gz + tr_mask.nii.gz / tr_lungmasks_updated.nii.gz, or rp_im/ + rp_msk/",
    "nnunet": "nnU-Net: imagesTr/CASE_0000.nii.gz + labelsTr/CASE.nii.gz (+ dataset.json)",
    "folders": "images/ beside mask folder(s) (e.g. masks/, infection/, ggo_consolidation/), files matched by name",
    "slicer": "CASE.nrrd beside CASE.seg.nrrd (3D Slicer segmentations)",
    "phantom": "synthetic chest phantoms (no files needed)",
}
LAYOUTS = tuple(LAYOUT_HELP)
# the "options" each reader understands; anything else is refused (a typo would otherwise change nothing)
READER_OPTIONS = {
    "covid19_ct_seg": (),
    "medseg": ("effusion",),
    "nnunet": ("label_map", "sides_known", "patient_pattern"),
    "folders": ("image_dir", "mask_dir", "label_map", "patient_pattern"),
    "slicer": ("label_map",),
    "phantom": ("cases", "shape", "seed"),
}
NAMES_SHOWN = 5  # skipped images etc. are named up to this many, then counted
# internal value of lesion voxels in lung labels: infected lung is lung, its side comes from the lung around it
_LESION = MAX_LABEL_VALUE
_TASK_LABELS = {"lungs": LUNG_LABELS, "infection": INFECTION_LABELS}


@dataclass
class Case:
    """One labelled case: CT (or 2D slice) and labels in our convention for the dataset's task."""

    name: str
    image: Volume
    labels: np.ndarray  # uint8 (z, y, x), same shape as image
    patient: str = ""  # cases of one patient must stay on one side of a split
    lungs: np.ndarray | None = None  # lung labels when the source has them (lesion hosts, lung cropping)

    def __iter__(self):  # ``image, labels = case``
        yield self.image
        yield self.labels


@dataclass
class CaseSource:
    """A case found on disk, loaded only when needed."""

    name: str
    patient: str
    load: Callable[[], Case]


@dataclass
class Dataset:
    root: Path | None
    layout: str
    task: str
    sources: list[CaseSource]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[Case]:
        for source in self.sources:
            yield source.load()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def describe(self) -> str:
        where = self.root if self.root is not None else "(generated)"
        return f"{len(self)} case(s), layout '{self.layout}', task '{self.task}', from {where}"


def _shown(path: Path) -> str:
    """A label file as the user knows it: its folder and name (the CT and its masks share file names)."""
    return f"{path.parent.name}/{path.name}"


# ------------------------------------------------------------------------------------------------------
# label conversion helpers
# ------------------------------------------------------------------------------------------------------
def lungs_by_side(volume: Volume, labels: np.ndarray, right_value: int | None = None,
                  left_value: int | None = None) -> np.ndarray:
    """Our right (1) / left (2) lung labels from a dataset's lung mask.

    With two lung values the documented convention is checked against patient geometry (LPS x of each
    label's centroid) and swapped when it disagrees: datasets differ on whether "left" means the patient's
    or the viewer's left. A binary mask is split into the two lungs geometrically.
    """
    labels = np.asarray(labels)
    if right_value is not None and left_value is not None and (labels == right_value).any() and (labels == left_value).any():
        right, left = labels == right_value, labels == left_value
        if sides_swapped(volume, right, left):
            right, left = left, right
        out = np.zeros(labels.shape, np.uint8)
        out[right], out[left] = RIGHT_LUNG, LEFT_LUNG
        return out
    from lungseg_core.postprocessing.lungs import split_left_right

    return split_left_right(labels > 0, volume)


def map_values(labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Relabel with ``mapping`` (values not in it become 0: callers refuse values nobody defined first)."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint8)
    for source, target in mapping.items():
        out[labels == source] = target
    return out


def _lung_labels(volume: Volume, values: np.ndarray, sides: bool) -> np.ndarray:
    """Our right/left lungs from lung values mapped to RIGHT_LUNG / LEFT_LUNG / ``_LESION``.

    Lesions (infection named in the labels) are lung: each joins the side of the lung around it. Without
    sides in the values, or with lesions only, the whole lung region is split geometrically.
    """
    lesions = values == _LESION
    if not sides or not np.any(values[~lesions]):
        return lungs_by_side(volume, values > 0)
    sided = lungs_by_side(volume, np.where(lesions, 0, values), RIGHT_LUNG, LEFT_LUNG)
    return _lesions_join_lungs(volume, sided, lesions) if lesions.any() else sided


def _lesions_join_lungs(volume: Volume, sided: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """Each connected lesion gets the side of the lung it touches most (of the nearer lung if it touches none)."""
    from scipy import ndimage

    out = sided.copy()
    parts, _ = ndimage.label(lesions)
    for index, box in enumerate(ndimage.find_objects(parts), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        part = parts[grown] == index
        around = sided[grown][ndimage.binary_dilation(part) & ~part]
        right, left = np.count_nonzero(around == RIGHT_LUNG), np.count_nonzero(around == LEFT_LUNG)
        side = RIGHT_LUNG if right > left else LEFT_LUNG if left > right else _nearer_side(volume, sided, parts == index)
        out[grown][part] = side
    return out


def _nearer_side(volume: Volume, sided: np.ndarray, mask: np.ndarray) -> int:
    """The lung side whose centroid is nearer to ``mask``'s in patient x (a lesion that touches no lung)."""
    x = patient_left_score(volume, mask)
    centres = {side: patient_left_score(volume, sided == side) for side in (RIGHT_LUNG, LEFT_LUNG) if np.any(sided == side)}
    return min(centres, key=lambda side: abs(centres[side] - x))


@dataclass
class _ValueMap:
    """What a source's label values mean, so that every value is either mapped or refused."""

    known: dict[int, str]  # every value the labels may hold, with its meaning; any other value is refused
    lungs: dict[int, int] | None = None  # value -> RIGHT_LUNG / LEFT_LUNG / _LESION; None: no lung labels
    infection: dict[int, int] | None = None  # value -> GGO / CONSOLIDATION; None: no infection labels
    sides: bool = True  # the lung values carry sides (checked against patient geometry)
    where: str = "the source"  # who defines the values, for messages
    fix: str = "give options.label_map {\"source value\": our label} (0 drops a value)"


def _ours(task: str, fix: str = _ValueMap.fix) -> _ValueMap:
    """Labels already in the lungseg convention: 1 right / 2 left lung, or 1 GGO / 2 consolidation."""
    identity = {1: 1, 2: 2}
    named = {value: name.lower() for value, name in _TASK_LABELS[task].items()}
    return _ValueMap({0: "background", **named}, lungs=identity if task == "lungs" else None,
                     infection=identity if task == "infection" else None, where=f"lungseg's {task} convention", fix=fix)


def _from_label_map(label_map: dict[int, int], task: str, names: dict[int, str], sides: bool) -> _ValueMap:
    """``options.label_map`` as a value map: it names every value the labels may hold."""
    known = {0: "background", **{value: names.get(value, f"-> {target}") for value, target in label_map.items()}}
    mapping = {value: target for value, target in label_map.items() if target}
    return _ValueMap(known, lungs=mapping if task == "lungs" else None, infection=mapping if task == "infection" else None,
                     sides=sides, where="options.label_map", fix="add the value to options.label_map (0 drops it)")


def _legend(task: str) -> str:
    return ", ".join([f"{value} {name.lower()}" for value, name in _TASK_LABELS[task].items()] + ["0 drops it"])


def _as_label(value) -> int | None:
    """An int label from JSON (``1`` or ``"1"``; not ``true``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


def _label_map_option(options: dict, task: str, by_name: bool = False) -> dict | None:
    """``options.label_map`` {source value (Slicer: segment name): our label}, checked; None when not given."""
    given = options.get("label_map")
    if given is None:
        return None
    example = '{"Segment_1": 1, "Segment_2": 2}' if by_name else '{"5": 1, "6": 2}'
    if not isinstance(given, dict) or not given:
        raise InputError("options.label_map must be a non-empty object {source: our label}", f"e.g. {example} ({_legend(task)})")
    out = {}
    for key, target in given.items():
        source = str(key) if by_name else _as_label(key)
        if source is None or _as_label(target) not in (0, *_TASK_LABELS[task]):
            raise InputError(f"options.label_map entry {key!r}: {target!r} is not a {'segment name' if by_name else 'value'} "
                             f"and a {task} label", f"use e.g. {example} ({_legend(task)})")
        out[source] = _as_label(target)
    return out


def _refuse_unknown_values(labels: np.ndarray, path: Path, values: _ValueMap) -> None:
    """A value the source does not define would silently become background: name it and the file instead."""
    unknown = [v for v in sorted(present_values(labels)) if v not in values.known]
    if unknown:
        defined = ", ".join(f"{v} {name}" for v, name in sorted(values.known.items()))
        raise InputError(f"'{_shown(path)}' holds value(s) {', '.join(map(str, unknown))}, which {values.where} "
                         f"does not define (labels: {defined})", values.fix)


def _labels_and_lungs(image: Volume, raw: np.ndarray, path: Path, values: _ValueMap,
                      task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels for ``task``, lung labels or None) of one label file, every value checked first."""
    _check_same_shape(image, raw, path)
    _refuse_unknown_values(raw, path, values)
    lungs = _lung_labels(image, map_values(raw, values.lungs), values.sides) if values.lungs else None
    labels = lungs if task == "lungs" else map_values(raw, values.infection or {})
    return labels, lungs


def _labels_array(path: Path) -> np.ndarray:
    return read_labelmap(path).array


def _parts_inside_root(name: str) -> tuple[str, ...]:
    """The parts of a metadata path that can only name something below the dataset root.

    Released metadata holds stale absolute paths (``/kaggle/input/.../x.nii``), so only tails of a path are
    ever tried: the anchor (``/``, ``C:\\``) and everything up to the last ``..`` are dropped. A path of a
    metadata file can therefore never escape the dataset root, whatever it says.
    """
    parts = PurePosixPath(name.replace("\\", "/")).parts
    parts = tuple(p for p in parts if p not in ("/", ".") and not (len(p) == 2 and p[1] == ":"))
    if ".." in parts:
        parts = parts[len(parts) - parts[::-1].index(".."):]
    if not parts:
        raise InputError(f"Metadata path '{name}' names no file", "give file paths relative to the dataset folder")
    return parts


def _find_file(root: Path, name: str, notes: set[str] | None = None, image_outside: set[str] | None = None) -> Path:
    """The file ``name`` of a metadata row below ``root`` (the released metadata paths are stale).

    The CT and its masks share one file name in different folders, so the folder always counts: the
    longest tail of the path that exists under ``root`` wins (``lung_mask/x.nii``; a bare ``x.nii`` only
    when the path has no folder), then the one file of that name in a folder of the same name in another
    letter case (``Lung_Mask/x.nii``, noted). A CT (``image_outside``: lower-case names of the mask folders)
    may also be the one file of its name outside the mask folders (noted). Nothing else is ever taken.
    """
    parts = _parts_inside_root(name)
    for k in range(len(parts), 1 if len(parts) > 1 else 0, -1):
        candidate = root.joinpath(*parts[-k:])
        if candidate.is_file():
            return candidate
    listed = "/".join(parts[-2:])
    same_name = sorted(p for p in root.rglob("*") if p.name == parts[-1] and p.is_file())
    if len(parts) > 1:
        found = _the_only(name, root, [p for p in same_name if p.parent.name.lower() == parts[-2].lower()])
        if found is not None:
            _note_folder(notes, f"metadata folder '{parts[-2]}/' read as '{found.parent.relative_to(root)}/' "
                                "(letter case differs)")
            return found
    if image_outside is not None:
        found = _the_only(name, root, [p for p in same_name if p.parent.name.lower() not in image_outside])
        if found is not None:
            _note_folder(notes, f"CTs listed in '{parts[-2] if len(parts) > 1 else '.'}/' read from "
                                f"'{found.parent.relative_to(root)}/' (the only files of their names outside the mask folders)")
            return found
    raise InputError(f"'{listed}' listed in metadata.csv is not below '{root}'", "copy the file there or fix metadata.csv")


def _the_only(name: str, root: Path, hits: list[Path]) -> Path | None:
    if len(hits) > 1:
        found = ", ".join(str(p.relative_to(root)) for p in hits)
        raise InputError(f"'{name}' in metadata.csv could be any of {found}", "give its exact path in metadata.csv")
    return hits[0] if hits else None


def _note_folder(notes: set[str] | None, note: str) -> None:
    if notes is not None:
        notes.add(note)  # one note per folder, not per file


def _mark_display(volume: Volume) -> Volume:
    """The Radiopaedia cases of COVID-19-CT-Seg are stored 0-255 (windowed), not HU: say so."""
    low, high = float(volume.array.min()), float(volume.array.max())
    if low >= 0 and high <= 255:
        volume.intensity = "display"
    return volume


def _check_same_shape(image: Volume, labels: np.ndarray, path: Path) -> None:
    if tuple(labels.shape) != image.shape:
        raise InputError(
            f"Mask '{_shown(path)}' has shape {tuple(labels.shape)} but its image '{image.name}' has {image.shape}",
            "give labels on the image's own grid",
        )


def _required_dir(root: Path, name: str, layout: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise InputError(f"'{root}' has no {name}/ folder", f"arrange it as {LAYOUT_HELP[layout]}")
    return folder


def _note_unlabelled(notes: list[str], images: list[str], where: str) -> None:
    if images:
        notes.append(f"{len(images)} image(s) without labels skipped (no file of the same name in {where}): "
                     f"{shown_list(images, NAMES_SHOWN)}")


# ------------------------------------------------------------------------------------------------------
# COVID-19-CT-Seg
# ------------------------------------------------------------------------------------------------------
_C19_MASK_COLUMNS = ("lung_mask", "infection_mask", "lung_and_infection_mask")
_C19_LUNG_COLUMNS = ("lung_mask", "lung_and_infection_mask")  # in order of preference
_C19_INFECTION_COLUMNS = ("infection_mask", "lung_and_infection_mask")
_C19_LUNGS = _ValueMap({0: "background", 1: "left lung", 2: "right lung"}, lungs={1: LEFT_LUNG, 2: RIGHT_LUNG},
                       where="COVID-19-CT-Seg's lung_mask", fix="give the lung masks of COVID-19-CT-Seg (1 left, 2 right)")
_C19_INFECTION = _ValueMap({0: "background", 1: "infection"}, infection={1: GGO},
                           where="COVID-19-CT-Seg's infection_mask", fix="give the binary infection masks of COVID-19-CT-Seg")
# no GGO / consolidation split in this dataset: all infection is labelled GGO (documented); infected lung is lung
_C19_BOTH = _ValueMap({0: "background", 1: "left lung", 2: "right lung", 3: "infection"},
                      lungs={1: LEFT_LUNG, 2: RIGHT_LUNG, 3: _LESION}, infection={3: GGO},
                      where="COVID-19-CT-Seg's lung_and_infection_mask",
                      fix="give the lung_and_infection_mask files of COVID-19-CT-Seg")
_C19_VALUES = {"lung_mask": _C19_LUNGS, "infection_mask": _C19_INFECTION, "lung_and_infection_mask": _C19_BOTH}


def _covid19_sources(root: Path, task: str, options: dict, notes: list[str]) -> list[CaseSource]:
    path = root / "metadata.csv"
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel saves UTF-8 with a BOM
        rows = list(csv.DictReader(handle))
    if not rows or "ct_scan" not in rows[0]:
        raise InputError(f"'{path}' has no ct_scan column", "give the metadata.csv of COVID-19-CT-Seg")
    folder_notes: set[str] = set()
    sources = []
    for row in rows:
        name = case_name(Path(row["ct_scan"].replace("\\", "/")).name)
        files = _covid19_files(root, row, name, task, folder_notes)  # found now: a missing file fails before training
        sources.append(CaseSource(name, name, lambda files=files, name=name: _load_covid19(files, name, task)))
    notes.extend(sorted(folder_notes))
    return sources


def _covid19_files(root: Path, row: dict, name: str, task: str, notes: set[str]) -> dict[str, Path]:
    """{column: file} of the columns this task reads: the lungs (and the infection for ``infection``)."""
    lung_column, infection_column = _first_column(_C19_LUNG_COLUMNS, row), _first_column(_C19_INFECTION_COLUMNS, row)
    if task == "lungs" and lung_column is None:
        raise InputError(f"Case '{name}' has no lung mask in metadata.csv", "add the lung_mask column")
    if task == "infection" and infection_column is None:
        raise InputError(f"Case '{name}' has no infection mask in metadata.csv", "add the infection_mask column")
    columns = {lung_column, infection_column if task == "infection" else None} - {None}
    files = {column: _find_file(root, row[column], notes) for column in sorted(columns)}
    mask_folders = set(_C19_MASK_COLUMNS) | {p.parent.name.lower() for p in files.values()}
    files["ct_scan"] = _find_file(root, row["ct_scan"], notes, image_outside=mask_folders)
    _refuse_shared_files(files, name)
    return files


def _first_column(columns: tuple[str, ...], given: dict) -> str | None:
    return next((c for c in columns if given.get(c)), None)


def _refuse_shared_files(files: dict[str, Path], name: str) -> None:
    """A mask that is the CT (or another column's mask) would train on nonsense: refuse it."""
    seen: dict[Path, str] = {}
    for column, path in files.items():
        if path in seen:
            raise InputError(f"metadata.csv gives '{path.name}' as both {seen[path]} and {column} of case '{name}'",
                             "fix metadata.csv: each column names its own file")
        seen[path] = column


def _load_covid19(files: dict[str, Path], name: str, task: str) -> Case:
    image = _mark_display(read_volume(files["ct_scan"]))
    lungs = None  # the infection task reads infection without lungs when metadata.csv lists none
    lung_column = _first_column(_C19_LUNG_COLUMNS, files)
    if lung_column is not None:
        labels, lungs = _labels_and_lungs(image, _labels_array(files[lung_column]), files[lung_column],
                                          _C19_VALUES[lung_column], "lungs")
    if task == "infection":
        column = _first_column(_C19_INFECTION_COLUMNS, files)
        labels, _ = _labels_and_lungs(image, _labels_array(files[column]), files[column], _C19_VALUES[column], task)
    return Case(name, image, labels, name, lungs)


# ------------------------------------------------------------------------------------------------------
# MedSeg
# ------------------------------------------------------------------------------------------------------
_MEDSEG_IMAGES = ["tr_im.nii.gz", "tr_im.nii"]
_MEDSEG_MASKS = ["tr_mask.nii.gz", "tr_mask.nii"]
_MEDSEG_LUNGS = ["tr_lungmasks_updated.nii.gz", "tr_lungmasks_updated.nii", "tr_lungmasks.nii.gz"]


def _medseg_values(effusion: str) -> _ValueMap:
    """MedSeg masks: 1 GGO, 2 consolidation, 3 pleural effusion (outside the lung: dropped by default)."""
    mapping = {1: GGO, 2: CONSOLIDATION}
    if effusion == "consolidation":
        mapping[3] = CONSOLIDATION
    elif effusion != "drop":
        raise InputError(f"Unknown effusion option '{effusion}'", "use 'drop' or 'consolidation'")
    return _ValueMap({0: "background", 1: "GGO", 2: "consolidation", 3: "pleural effusion"}, infection=mapping,
                     where="MedSeg's convention", fix="give MedSeg's masks (1 GGO, 2 consolidation, 3 pleural effusion)")


def _medseg_sources(root: Path, task: str, options: dict, notes: list[str]) -> list[CaseSource]:
    values = _medseg_values(options.get("effusion", "drop"))
    sources: list[CaseSource] = []
    image_path = _first_existing(root, _MEDSEG_IMAGES)
    if image_path is not None:
        lung_path, mask_path = _medseg_stack_files(root, image_path, task)
        for z in range(_volume_size(image_path)[2]):
            # the 100 training slices come from about 40 unnamed patients: each slice is its own case
            name = f"tr_im_{z:03d}"
            sources.append(CaseSource(name, name, lambda z=z, name=name: _load_medseg_slice(
                image_path, lung_path, mask_path, z, name, task, values)))
    rp_dir = root / "rp_im"
    if rp_dir.is_dir():
        for path in sorted(p for p in rp_dir.iterdir() if p.name.lower().endswith(VOLUME_SUFFIXES)):
            name = f"rp_{case_name(path)}"
            sources.append(CaseSource(name, name, lambda path=path, name=name: _load_medseg_rp(root, path, name, task, values)))
    return sources


def _medseg_stack_files(root: Path, image_path: Path, task: str) -> tuple[Path | None, Path | None]:
    """(lung mask stack, infection mask stack) of ``tr_im``, each checked to hold one slice per image slice."""
    lung_path, mask_path = _first_existing(root, _MEDSEG_LUNGS), _first_existing(root, _MEDSEG_MASKS)
    if task == "lungs" and lung_path is None:
        raise InputError(f"No tr_lungmasks_updated.nii.gz in '{root}'", "download MedSeg's lung masks too")
    if task == "infection" and mask_path is None:
        raise InputError(f"No tr_mask.nii.gz in '{root}'", "download MedSeg's infection masks too")
    size = _volume_size(image_path)
    for path in (lung_path, mask_path if task == "infection" else None):
        other = size if path is None else _volume_size(path)
        if other != size:
            raise InputError(
                f"'{path.name}' holds {other[2]} slice(s) of {other[0]}x{other[1]} but '{image_path.name}' holds "
                f"{size[2]} of {size[0]}x{size[1]}: mask slice k belongs to image slice k",
                "use the mask stacks released with this tr_im (same number and size of slices)",
            )
    return lung_path, mask_path


def _first_existing(root: Path, names: list[str]) -> Path | None:
    return next((root / n for n in names if (root / n).exists()), None)


def _volume_size(path: Path) -> tuple[int, int, int]:
    """(x, y, slices) from the header, without reading the voxels."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    return int(size[0]), int(size[1]), int(size[2]) if len(size) >= 3 else 1


_MEDSEG_CACHE: dict[str, Volume] = {}


def _medseg_stack(path: Path, labels: bool = False) -> Volume:
    """The MedSeg stacks are small (100 x 512 x 512): read each once, slice it many times."""
    key = str(path)
    if key not in _MEDSEG_CACHE:
        if len(_MEDSEG_CACHE) >= 3:  # image, infection and lung stacks of one dataset
            _MEDSEG_CACHE.clear()
        _MEDSEG_CACHE[key] = read_labelmap(path) if labels else read_volume(path)
    return _MEDSEG_CACHE[key]


def _load_medseg_slice(image_path: Path, lung_path: Path | None, mask_path: Path | None, z: int, name: str,
                       task: str, values: _ValueMap) -> Case:
    full = _medseg_stack(image_path)
    image = Volume(full.array[z:z + 1].copy(), full.spacing, full.origin, full.direction,
                   intensity=full.intensity, is_2d=True, name=name)
    lungs = None
    if lung_path is not None:
        lungs = lungs_by_side(image, _medseg_stack(lung_path, labels=True).array[z:z + 1])
    if task == "lungs":
        return Case(name, image, lungs, name, lungs)
    labels, _ = _labels_and_lungs(image, _medseg_stack(mask_path, labels=True).array[z:z + 1], mask_path, values, task)
    return Case(name, image, labels, name, lungs)


def _load_medseg_rp(root: Path, path: Path, name: str, task: str, values: _ValueMap) -> Case:
    image = read_volume(path)
    lung_path = root / "rp_lung_msk" / path.name
    mask_path = root / "rp_msk" / path.name
    lungs = None
    if lung_path.exists():
        raw = _labels_array(lung_path)
        _check_same_shape(image, raw, lung_path)
        lungs = lungs_by_side(image, raw)
    if task == "lungs":
        if lungs is None:
            raise InputError(f"No lung mask '{lung_path}' for {path.name}", "add rp_lung_msk/ from MedSeg")
        return Case(name, image, lungs, name, lungs)
    if not mask_path.exists():
        raise InputError(f"No infection mask '{mask_path}' for {path.name}", "add rp_msk/ from MedSeg")
    labels, _ = _labels_and_lungs(image, _labels_array(mask_path), mask_path, values, task)
    return Case(name, image, labels, name, lungs)


# ------------------------------------------------------------------------------------------------------
# nnU-Net
# ------------------------------------------------------------------------------------------------------
def _nnunet_label_names(root: Path) -> dict[int, str]:
    """Value -> name from dataset.json (nnU-Net v2 {"name": value} or v1 {"value": "name"})."""
    path = root / "dataset.json"
    if not path.exists():
        return {}
    labels = json.loads(path.read_text(encoding="utf-8")).get("labels", {})
    out: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
            out[int(value)] = str(key)
        elif isinstance(value, list):  # v2 regions: skip, not a single value
            continue
        else:
            out[int(key)] = str(value)
    return out


_LESION_WORDS = ("ground", "ggo", "consolid", "infect", "lesion", "covid")


def label_mapping_from_names(names: dict[int, str], task: str) -> tuple[dict[int, int], bool]:
    """(value -> our label, sides known) from label names like 'right lung', 'GGO', 'consolidation'.

    For ``lungs``, lesion names (infection, GGO, consolidation, lesion) map to ``_LESION``: infected lung is
    lung, so those voxels join the lung around them instead of becoming background.
    """
    mapping: dict[int, int] = {}
    sides = False
    for value, name in names.items():
        text = name.lower()
        lesion = any(word in text for word in _LESION_WORDS)
        if value == 0:
            continue
        if task == "lungs" and lesion:
            mapping[value] = _LESION
        elif task == "lungs" and "lung" in text:
            if "right" in text:
                mapping[value], sides = RIGHT_LUNG, True
            elif "left" in text:
                mapping[value], sides = LEFT_LUNG, True
            else:
                mapping[value] = RIGHT_LUNG  # one lung label: split into sides geometrically later
        elif task == "infection" and lesion:
            mapping[value] = CONSOLIDATION if "consolid" in text else GGO
    return mapping, sides


def _nnunet_values(root: Path, task: str, options: dict) -> _ValueMap:
    """The value map of dataset.json's label names, or of options.label_map, or our convention without either."""
    names = _nnunet_label_names(root)
    lungs, sides = label_mapping_from_names(names, "lungs")
    infection, _ = label_mapping_from_names(names, "infection")
    label_map = _label_map_option(options, task)
    if label_map is not None:
        if task == "lungs":
            sides = bool(options.get("sides_known", True))
        values = _from_label_map(label_map, task, names, sides)
        values.lungs = values.lungs or lungs or None  # infection task: dataset.json's lungs for crop_to_lungs
        return values
    if not names:
        return _ours(task, fix="add dataset.json with the label names, or give options.label_map")
    found = lungs if task == "lungs" else infection
    described = ", ".join(f"{v} {n}" for v, n in sorted(names.items()))
    if not any(target in _TASK_LABELS[task] for target in found.values()):
        raise InputError(f"'{root / 'dataset.json'}' names no {task} label (labels: {described})",
                         f'give options.label_map, e.g. {{"1": 1, "2": 2}} ({_legend(task)})')
    return _ValueMap({0: "background", **names}, lungs=lungs or None, infection=infection if task == "infection" else None,
                     sides=sides, where="dataset.json", fix="fix dataset.json or give options.label_map (0 drops a value)")


def _nnunet_sources(root: Path, task: str, options: dict, notes: list[str]) -> list[CaseSource]:
    images = _required_dir(root, "imagesTr", "nnunet")
    labels = _required_dir(root, "labelsTr", "nnunet")
    values = _nnunet_values(root, task, options)
    patient_pattern = options.get("patient_pattern")
    sources, unlabelled = [], []
    for path in sorted(images.iterdir()):
        stem = case_name(path)
        if not stem.endswith("_0000"):
            continue  # extra modalities (_0001 ...) are not used: CT only
        name = stem[: -len("_0000")]
        label_path = _find_label(labels, name)
        if label_path is None:
            unlabelled.append(path.name)
            continue
        patient = _patient_of(name, patient_pattern)
        sources.append(CaseSource(name, patient, lambda p=path, lp=label_path, n=name, pt=patient:
                                  _load_mapped(p, lp, n, pt, task, values)))
    _note_unlabelled(notes, unlabelled, "labelsTr/")
    return sources


def _find_label(folder: Path, name: str) -> Path | None:
    for suffix in VOLUME_SUFFIXES + IMAGE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _patient_of(name: str, pattern: str | None) -> str:
    if not pattern:
        return name
    match = re.search(pattern, name)
    return match.group(1) if match and match.groups() else (match.group(0) if match else name)


def _load_mapped(image_path: Path, label_path: Path, name: str, patient: str, task: str, values: _ValueMap) -> Case:
    image = read_volume(image_path)
    if label_path.name.lower().endswith(".seg.nrrd"):  # segments matched by name: already our labels
        raw, values = read_labelmap(label_path, task).array, _ours(task)
    else:
        raw = _labels_array(label_path)
    labels, lungs = _labels_and_lungs(image, raw, label_path, values, task)
    return Case(name, image, labels, patient, lungs)


# ------------------------------------------------------------------------------------------------------
# images/ + mask folders
# ------------------------------------------------------------------------------------------------------
# mask folder names per task, in order of preference (options["mask_dir"] overrides); only these are used
LUNG_MASK_DIRS = ("lungs", "lung_masks", "lung")
MASK_DIRS = {
    "lungs": LUNG_MASK_DIRS + ("masks", "labels", "mask"),
    "infection": ("ggo_consolidation", "infection", "lesions", "masks", "labels", "mask"),
}
_MASK_KIND = {"lungs": "lung", "infection": "infection"}
_FOLDER_FIX = {
    "lungs": 'give options.label_map, e.g. {"1": 1, "2": 2, "3": 0} (1 right lung, 2 left lung, 0 drops a value)',
    "infection": ('give options.label_map, e.g. {"1": 1, "2": 2, "3": 0} (1 GGO, 2 consolidation, 0 drops a value); '
                  "MedSeg masks use 3 for pleural effusion: 0 drops it as the medseg layout does, 2 counts it as consolidation"),
}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES + VOLUME_SUFFIXES))


def _mask_folder(root: Path, images: Path, task: str, options: dict) -> Path:
    """``options.mask_dir``, else the first folder named as the docs say for ``task``; never a guess."""
    if "mask_dir" in options:
        folder = root / options["mask_dir"]
        if not folder.is_dir():
            raise InputError(f"Mask folder '{folder}' does not exist", "check options.mask_dir in the config")
        return folder
    folder = next((root / n for n in MASK_DIRS[task] if (root / n).is_dir()), None)
    if folder is not None:
        return folder
    others = sorted(f"{p.name}/" for p in root.iterdir() if p.is_dir() and p != images)
    wanted = ", ".join(MASK_DIRS[task])
    if not others:
        raise InputError(f"'{root}' has {images.name}/ but no mask folder", f"add one of {wanted}/")
    raise InputError(f"'{root}' has no {_MASK_KIND[task]} mask folder ({wanted}); found {', '.join(others)}",
                     f"set options.mask_dir if one of them holds {_MASK_KIND[task]} masks")


def _folders_sources(root: Path, task: str, options: dict, notes: list[str]) -> list[CaseSource]:
    images = _required_dir(root, options.get("image_dir", "images"), "folders")
    mask_folder = _mask_folder(root, images, task, options)
    notes.append(f"{_MASK_KIND[task]} masks from {mask_folder.name}/")
    lung_folder = None
    if task == "infection":  # lung masks beside the infection masks make crop_to_lungs possible
        lung_folder = next((root / n for n in LUNG_MASK_DIRS if (root / n).is_dir() and root / n != mask_folder), None)
        if lung_folder is not None:
            notes.append(f"lung masks from {lung_folder.name}/ (for crop_to_lungs)")
    label_map = _label_map_option(options, task)
    values = _ours(task, _FOLDER_FIX[task]) if label_map is None else _from_label_map(label_map, task, {}, True)
    masks = {case_name(p): p for p in _image_files(mask_folder)}
    lung_masks = {case_name(p): p for p in _image_files(lung_folder)} if lung_folder is not None else {}
    patient_pattern = options.get("patient_pattern")
    sources, unlabelled = [], []
    for path in _image_files(images):
        name = case_name(path)
        if name not in masks:
            unlabelled.append(path.name)
            continue
        patient = _patient_of(name, patient_pattern)
        sources.append(CaseSource(name, patient, lambda p=path, m=masks[name], lm=lung_masks.get(name), n=name, pt=patient:
                                  _load_folder_case(p, m, lm, n, pt, task, values)))
    _note_unlabelled(notes, unlabelled, f"{mask_folder.name}/")
    return sources


def _load_folder_case(image_path: Path, mask_path: Path, lung_path: Path | None, name: str, patient: str, task: str,
                      values: _ValueMap) -> Case:
    image = read_volume(image_path)
    raw = read_labelmap(mask_path, task).array  # 0/255 masks come back 0/1
    _refuse_transposed(image, raw, mask_path)
    labels, lungs = _labels_and_lungs(image, raw, mask_path, values, task)
    if lung_path is not None:
        _, lungs = _labels_and_lungs(image, read_labelmap(lung_path).array, lung_path, _ours("lungs"), "lungs")
    return Case(name, image, labels, patient, lungs)


def _refuse_transposed(image: Volume, raw: np.ndarray, mask_path: Path) -> None:
    """Rows and columns swapped (a mask exported the other way round): only when that is what differs."""
    depth, rows, cols = image.shape
    if raw.shape != image.shape and raw.shape == (depth, cols, rows) and rows != cols:
        raise InputError(f"Mask '{_shown(mask_path)}' has shape {raw.shape} but its image has {image.shape}: "
                         "rows and columns are swapped", "export both the same way")


# ------------------------------------------------------------------------------------------------------
# Slicer .seg.nrrd
# ------------------------------------------------------------------------------------------------------
def _slicer_sources(root: Path, task: str, options: dict, notes: list[str]) -> list[CaseSource]:
    from lungseg_core.io.segmentation_files import read_segments

    label_map = _label_map_option(options, task, by_name=True)
    sources, unpaired, segments = [], [], {}
    for seg in sorted(root.rglob("*.seg.nrrd")):
        name = seg.name[: -len(".seg.nrrd")]
        image = next((seg.parent / f"{name}{s}" for s in VOLUME_SUFFIXES
                      if s != ".seg.nrrd" and (seg.parent / f"{name}{s}").exists()), None)
        if image is None:
            unpaired.append(seg.name)
            continue
        segments[seg] = read_segments(seg)  # header only: a file without usable segments fails now
        sources.append(CaseSource(name, name, lambda i=image, s=seg, n=name: _load_slicer_case(i, s, n, task, label_map)))
    _refuse_unmatched_segments(segments, task, label_map)
    if unpaired:
        notes.append(f"{len(unpaired)} segmentation(s) without a volume of the same name skipped: {shown_list(unpaired, NAMES_SHOWN)}")
    return sources


_SEGMENTS_WANTED = {"lungs": "named or coded as right or left lung",
                    "infection": "named GGO, ground glass, consolidation, infection or lesion"}


def _refuse_unmatched_segments(segments: dict[Path, list[dict]], task: str, label_map: dict[str, int] | None) -> None:
    """Every segmentation needs a segment for ``task``; every label_map name must be a segment somewhere."""
    from lungseg_core.io.segmentation_files import segment_label

    all_names = {s.get("name", "") for found in segments.values() for s in found}
    missing = sorted(set(label_map or {}) - all_names)
    if missing:
        raise InputError(f"options.label_map names segment(s) {', '.join(missing)}, which no .seg.nrrd has "
                         f"(segments: {', '.join(sorted(all_names))})", "use the segment names shown in Slicer's Segment Editor")
    for seg, found in segments.items():
        if not any(segment_label(s, task, label_map) for s in found):
            names = [s.get("name", "") for s in found] or ["(none)"]
            wanted = "listed in options.label_map" if label_map else _SEGMENTS_WANTED[task]
            raise InputError(f"'{seg.name}' has segments {', '.join(names)}; none is {wanted}",
                             f'rename them in Slicer or give options.label_map {{"segment name": label}} ({_legend(task)})')


def _load_slicer_case(image_path: Path, seg_path: Path, name: str, task: str, label_map: dict[str, int] | None) -> Case:
    from lungseg_core.io.segmentation_files import read_seg_nrrd_labelmaps

    image = read_volume(image_path)
    # segments matched by name / terminology (or label_map); the infection task keeps lung segments for crop_to_lungs
    maps = read_seg_nrrd_labelmaps(seg_path, {task: label_map, **({"lungs": None} if task == "infection" else {})})
    lung_values = _on_image_grid(maps["lungs"], image)
    lungs = lungs_by_side(image, lung_values, RIGHT_LUNG, LEFT_LUNG) if lung_values.any() else None
    if task == "lungs":
        labels = lung_values if lungs is None else lungs  # an empty lung segment: nothing to split
        return Case(name, image, labels, name, labels)
    return Case(name, image, _on_image_grid(maps[task], image), name, lungs)


def _on_image_grid(labels: Volume, image: Volume) -> np.ndarray:
    """Segmentations are often stored cropped to their extent: resample onto the image (nearest)."""
    if labels.same_geometry(image):
        return np.asarray(labels.array, np.uint8)
    from lungseg_core.preprocessing.resample import resample_like

    return resample_like(labels.array.astype(np.uint8), labels, image)


# ------------------------------------------------------------------------------------------------------
# synthetic phantoms
# ------------------------------------------------------------------------------------------------------
def _phantom_sources(root: Path | None, task: str, options: dict, notes: list[str]) -> list[CaseSource]:
    count = int(options.get("cases", 4))
    shape = tuple(options.get("shape", (32, 64, 64)))
    sources = []
    for index in range(count):
        name = f"phantom_{index:03d}"
        sources.append(CaseSource(name, name, lambda i=index, n=name: _load_phantom(i, n, task, shape, options)))
    return sources


def _load_phantom(index: int, name: str, task: str, shape: tuple, options: dict) -> Case:
    from lungseg_core.synthetic.phantoms import make_chest_phantom

    seed = int(options.get("seed", 0)) + index
    phantom = make_chest_phantom(shape=shape, touching_lungs=bool(index % 2), seed=seed)
    phantom.ct.name = name
    labels = phantom.lungs if task == "lungs" else phantom.infection
    return Case(name, phantom.ct, labels.copy(), name, phantom.lungs.copy())


# ------------------------------------------------------------------------------------------------------
# detection and the public entry point
# ------------------------------------------------------------------------------------------------------
_READERS = {
    "covid19_ct_seg": _covid19_sources,
    "medseg": _medseg_sources,
    "nnunet": _nnunet_sources,
    "folders": _folders_sources,
    "slicer": _slicer_sources,
    "phantom": _phantom_sources,
}


def detect_layout(root: Path) -> str | None:
    """The layout of ``root`` or None: checks the distinctive file of each layout in turn."""
    metadata = root / "metadata.csv"
    if metadata.exists() and "ct_scan" in metadata.read_text(encoding="utf-8", errors="replace").splitlines()[0]:
        return "covid19_ct_seg"
    if _first_existing(root, _MEDSEG_IMAGES) or (root / "rp_im").is_dir():
        return "medseg"
    if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
        return "nnunet"
    if (root / "images").is_dir():
        return "folders"
    if any(root.rglob("*.seg.nrrd")):
        return "slicer"
    return None


def _layout_list() -> str:
    return "; ".join(f"{name} ({text})" for name, text in LAYOUT_HELP.items())


def open_dataset(root: str | Path | None, layout: str = "auto", task: str = "lungs", **options) -> Dataset:
    """Find the labelled cases of ``root``; ``layout="auto"`` detects it and records which in ``.layout``.

    ``options`` go to the reader (:data:`READER_OPTIONS`): ``mask_dir`` / ``image_dir`` (folders),
    ``label_map`` (nnunet, folders: {value: our label}; slicer: {segment name: our label}), ``sides_known``
    (nnunet), ``patient_pattern`` (folders, nnunet), ``effusion`` ("drop" or "consolidation", MedSeg),
    ``cases`` / ``shape`` / ``seed`` (phantom); others are refused. Raises :class:`InputError` naming the
    supported layouts when nothing usable is found.
    """
    if task not in TASKS:
        raise InputError(f"Unknown task '{task}'", f"use one of: {', '.join(TASKS)}")
    if layout == "phantom":
        _refuse_unknown_options(layout, options)
        sources = _phantom_sources(None, task, options, [])
        return Dataset(None, "phantom", task, sources, ["synthetic chest phantoms"])
    if root is None:
        raise InputError("No dataset folder given", "set 'root' of the data source (or layout 'phantom')")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Dataset folder '{root}' does not exist", "check the path (relative paths in a config are relative to the config file)")
    if layout == "auto":
        layout = detect_layout(root)
        if layout is None:
            raise InputError(f"Cannot tell the dataset layout of '{root}'", f"arrange it as one of: {_layout_list()}")
    elif layout not in _READERS:
        raise InputError(f"Unknown dataset layout '{layout}'", f"use auto or one of: {', '.join(LAYOUTS)}")
    _refuse_unknown_options(layout, options)
    notes: list[str] = []
    sources = _READERS[layout](root, task, options, notes)
    if not sources:
        raise InputError(f"No labelled {task} cases found in '{root}' (layout '{layout}')",
                         f"check the folder against the layout: {LAYOUT_HELP[layout]}")
    if layout == "covid19_ct_seg" and task == "infection":
        notes.append("COVID-19-CT-Seg has no GGO/consolidation split: all infection is labelled GGO (1)")
    return Dataset(root, layout, task, sources, notes)


def _refuse_unknown_options(layout: str, options: dict) -> None:
    unknown = sorted(set(options) - set(READER_OPTIONS[layout]))
    if unknown:
        valid = ", ".join(READER_OPTIONS[layout]) or "none"
        raise InputError(f"Unknown option(s) {', '.join(unknown)} for layout '{layout}'", f"valid options are: {valid}")
