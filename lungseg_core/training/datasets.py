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
from lungseg_core.io.readers import IMAGE_SUFFIXES, VOLUME_SUFFIXES, case_name, read_labelmap, read_volume
from lungseg_core.io.volume import Volume, patient_left_score
from lungseg_core.labels import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG
from lungseg_core.labels import TASKS

LAYOUT_HELP = {
    "covid19_ct_seg": "COVID-19-CT-Seg: metadata.csv with ct_scan, lung_mask, infection_mask columns",
    "medseg": "MedSeg: tr_im.nii.gz + tr_mask.nii.gz / tr_lungmasks_updated.nii.gz, or rp_im/ + rp_msk/",
    "nnunet": "nnU-Net: imagesTr/CASE_0000.nii.gz + labelsTr/CASE.nii.gz (+ dataset.json)",
    "folders": "images/ beside mask folder(s) (e.g. masks/, infection/, ggo_consolidation/), files matched by name",
    "slicer": "CASE.nrrd beside CASE.seg.nrrd (3D Slicer segmentations)",
    "phantom": "synthetic chest phantoms (no files needed)",
}
LAYOUTS = tuple(LAYOUT_HELP)


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
        if patient_left_score(volume, right) > patient_left_score(volume, left):
            right, left = left, right
        out = np.zeros(labels.shape, np.uint8)
        out[right], out[left] = RIGHT_LUNG, LEFT_LUNG
        return out
    from lungseg_core.postprocessing.lungs import split_left_right

    return split_left_right(labels > 0, volume)


def map_values(labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Relabel with ``mapping`` (values not in it become 0)."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint8)
    for source, target in mapping.items():
        out[labels == source] = target
    return out


def _labels_array(path: Path) -> np.ndarray:
    return np.rint(read_labelmap(path).array).astype(np.int32)


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


def _find_file(root: Path, name: str) -> Path:
    """The file ``name`` of a metadata row below ``root`` (the released metadata paths are stale).

    The longest tail of the path that exists under ``root`` wins (``lung_mask/x.nii`` before ``x.nii``):
    the CT and its masks share one file name in different folders.
    """
    parts = _parts_inside_root(name)
    for k in range(len(parts), 0, -1):
        candidate = root.joinpath(*parts[-k:])
        if candidate.is_file():
            return candidate
    base = parts[-1]
    folder = parts[-2] if len(parts) > 1 else None
    matches = sorted(root.rglob(base), key=lambda p: (p.parent.name != folder, str(p)))
    if not matches:
        raise InputError(f"'{base}' listed in the metadata is not below '{root}'", "copy the file there or fix metadata.csv")
    return matches[0]


def _mark_display(volume: Volume) -> Volume:
    """The Radiopaedia cases of COVID-19-CT-Seg are stored 0-255 (windowed), not HU: say so."""
    low, high = float(volume.array.min()), float(volume.array.max())
    if low >= 0 and high <= 255:
        volume.intensity = "display"
    return volume


def _check_same_shape(image: Volume, labels: np.ndarray, what: Path) -> None:
    if tuple(labels.shape) != image.shape:
        raise InputError(
            f"Labels '{what.name}' have shape {tuple(labels.shape)} but the image has {image.shape}",
            "give labels on the image's own grid",
        )


# ------------------------------------------------------------------------------------------------------
# COVID-19-CT-Seg
# ------------------------------------------------------------------------------------------------------
_C19_LEFT, _C19_RIGHT, _C19_INFECTION = 1, 2, 3


def _covid19_sources(root: Path, task: str, options: dict) -> list[CaseSource]:
    with open(root / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "ct_scan" not in rows[0]:
        raise InputError(f"'{root / 'metadata.csv'}' has no ct_scan column", "give the metadata.csv of COVID-19-CT-Seg")
    sources = []
    for row in rows:
        name = case_name(Path(row["ct_scan"].replace("\\", "/")).name)
        sources.append(CaseSource(name, name, lambda row=row, name=name: _load_covid19(root, row, name, task)))
    return sources


def _load_covid19(root: Path, row: dict, name: str, task: str) -> Case:
    image = _mark_display(read_volume(_find_file(root, row["ct_scan"])))
    lungs = None
    if row.get("lung_mask"):
        raw = _labels_array(_find_file(root, row["lung_mask"]))
        lungs = lungs_by_side(image, raw, right_value=_C19_RIGHT, left_value=_C19_LEFT)
    elif row.get("lung_and_infection_mask"):
        raw = _labels_array(_find_file(root, row["lung_and_infection_mask"]))
        lungs = lungs_by_side(image, raw > 0)  # infection voxels hide the side: split geometrically
    if task == "lungs":
        if lungs is None:
            raise InputError(f"Case '{name}' has no lung mask in metadata.csv", "add the lung_mask column")
        labels = lungs
    else:
        if row.get("infection_mask"):
            infection = _labels_array(_find_file(root, row["infection_mask"])) > 0
        else:
            infection = _labels_array(_find_file(root, row["lung_and_infection_mask"])) == _C19_INFECTION
        # no GGO / consolidation split in this dataset: all infection is labelled GGO (documented)
        labels = infection.astype(np.uint8) * GGO
    _check_same_shape(image, labels, Path(row["ct_scan"]))
    return Case(name, image, labels, name, lungs)


# ------------------------------------------------------------------------------------------------------
# MedSeg
# ------------------------------------------------------------------------------------------------------
def _medseg_infection(raw: np.ndarray, effusion: str) -> np.ndarray:
    """MedSeg masks: 1 GGO, 2 consolidation, 3 pleural effusion (outside the lung: dropped by default)."""
    mapping = {1: GGO, 2: CONSOLIDATION}
    if effusion == "consolidation":
        mapping[3] = CONSOLIDATION
    elif effusion != "drop":
        raise InputError(f"Unknown effusion option '{effusion}'", "use 'drop' or 'consolidation'")
    return map_values(raw, mapping)


def _medseg_sources(root: Path, task: str, options: dict) -> list[CaseSource]:
    effusion = options.get("effusion", "drop")
    sources: list[CaseSource] = []
    image_path = _first_existing(root, ["tr_im.nii.gz", "tr_im.nii"])
    if image_path is not None:
        depth = _volume_depth(image_path)
        for z in range(depth):
            # the 100 training slices come from about 40 unnamed patients: each slice is its own case
            name = f"tr_im_{z:03d}"
            sources.append(CaseSource(name, name, lambda z=z, name=name: _load_medseg_slice(root, image_path, z, name, task, effusion)))
    rp_dir = root / "rp_im"
    if rp_dir.is_dir():
        for path in sorted(p for p in rp_dir.iterdir() if p.name.lower().endswith(VOLUME_SUFFIXES)):
            name = f"rp_{case_name(path)}"
            sources.append(CaseSource(name, name, lambda path=path, name=name: _load_medseg_rp(root, path, name, task, effusion)))
    return sources


def _first_existing(root: Path, names: list[str]) -> Path | None:
    return next((root / n for n in names if (root / n).exists()), None)


def _volume_depth(path: Path) -> int:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    return int(size[2]) if len(size) >= 3 else 1


_MEDSEG_CACHE: dict[str, Volume] = {}


def _medseg_stack(path: Path) -> Volume:
    """The MedSeg stacks are small (100 x 512 x 512): read each once, slice it many times."""
    key = str(path)
    if key not in _MEDSEG_CACHE:
        if len(_MEDSEG_CACHE) >= 3:  # image, infection and lung stacks of one dataset
            _MEDSEG_CACHE.clear()
        _MEDSEG_CACHE[key] = read_volume(path)
    return _MEDSEG_CACHE[key]


def _load_medseg_slice(root: Path, image_path: Path, z: int, name: str, task: str, effusion: str) -> Case:
    full = _medseg_stack(image_path)
    image = Volume(full.array[z:z + 1].copy(), full.spacing, full.origin, full.direction,
                   intensity=full.intensity, is_2d=True, name=name)
    lung_path = _first_existing(root, ["tr_lungmasks_updated.nii.gz", "tr_lungmasks_updated.nii", "tr_lungmasks.nii.gz"])
    lungs = None
    if lung_path is not None:
        lungs = lungs_by_side(image, np.rint(_medseg_stack(lung_path).array[z:z + 1]).astype(np.int32))
    if task == "lungs":
        if lungs is None:
            raise InputError(f"No tr_lungmasks_updated.nii.gz in '{root}'", "download MedSeg's lung masks too")
        return Case(name, image, lungs, name, lungs)
    mask_path = _first_existing(root, ["tr_mask.nii.gz", "tr_mask.nii"])
    if mask_path is None:
        raise InputError(f"No tr_mask.nii.gz in '{root}'", "download MedSeg's infection masks too")
    labels = _medseg_infection(np.rint(_medseg_stack(mask_path).array[z:z + 1]).astype(np.int32), effusion)
    return Case(name, image, labels, name, lungs)


def _load_medseg_rp(root: Path, path: Path, name: str, task: str, effusion: str) -> Case:
    image = read_volume(path)
    lung_path = root / "rp_lung_msk" / path.name
    mask_path = root / "rp_msk" / path.name
    lungs = lungs_by_side(image, _labels_array(lung_path)) if lung_path.exists() else None
    if task == "lungs":
        if lungs is None:
            raise InputError(f"No lung mask '{lung_path}' for {path.name}", "add rp_lung_msk/ from MedSeg")
        labels = lungs
    else:
        if not mask_path.exists():
            raise InputError(f"No infection mask '{mask_path}' for {path.name}", "add rp_msk/ from MedSeg")
        labels = _medseg_infection(_labels_array(mask_path), effusion)
    _check_same_shape(image, labels, path)
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


def label_mapping_from_names(names: dict[int, str], task: str) -> tuple[dict[int, int], bool]:
    """(value -> our label, sides known) from label names like 'right lung', 'GGO', 'consolidation'."""
    mapping: dict[int, int] = {}
    sides = False
    for value, name in names.items():
        text = name.lower()
        if value == 0:
            continue
        if task == "lungs" and "lung" in text:
            if "right" in text:
                mapping[value], sides = RIGHT_LUNG, True
            elif "left" in text:
                mapping[value], sides = LEFT_LUNG, True
            else:
                mapping[value] = RIGHT_LUNG  # one lung label: split into sides geometrically later
        elif task == "infection":
            if "ground" in text or "ggo" in text:
                mapping[value] = GGO
            elif "consolid" in text:
                mapping[value] = CONSOLIDATION
            elif "infect" in text or "lesion" in text or "covid" in text:
                mapping[value] = GGO
    return mapping, sides


def _nnunet_sources(root: Path, task: str, options: dict) -> list[CaseSource]:
    images = root / "imagesTr"
    names = _nnunet_label_names(root)
    mapping, sides = label_mapping_from_names(names, task)
    if "label_map" in options:  # explicit {"source value": our value} wins over names
        mapping = {int(k): int(v) for k, v in options["label_map"].items()}
        sides = bool(options.get("sides_known", True))
    patient_pattern = options.get("patient_pattern")
    sources = []
    for path in sorted(images.iterdir()):
        stem = case_name(path)
        if not stem.endswith("_0000"):
            continue  # extra modalities (_0001 ...) are not used: CT only
        name = stem[: -len("_0000")]
        label_path = _find_label(root / "labelsTr", name)
        if label_path is None:
            continue
        patient = _patient_of(name, patient_pattern)
        sources.append(CaseSource(name, patient, lambda p=path, lp=label_path, n=name, pt=patient:
                                  _load_mapped(p, lp, n, pt, task, mapping, sides)))
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


def _load_mapped(image_path: Path, label_path: Path, name: str, patient: str, task: str,
                 mapping: dict[int, int], sides: bool) -> Case:
    image = read_volume(image_path)
    raw = read_labelmap(label_path, task).array if label_path.name.lower().endswith(".seg.nrrd") else _labels_array(label_path)
    _check_same_shape(image, raw, label_path)
    if not mapping:  # no names: assume the values are already ours
        mapping = {1: 1, 2: 2} if task == "lungs" or raw.max() > 1 else {1: 1}
        sides = task == "lungs" and int(raw.max()) >= 2
    labels = map_values(raw, mapping)
    if task == "lungs":
        labels = lungs_by_side(image, labels, RIGHT_LUNG, LEFT_LUNG) if sides else lungs_by_side(image, labels > 0)
    return Case(name, image, labels, patient, labels if task == "lungs" else None)


# ------------------------------------------------------------------------------------------------------
# images/ + mask folders
# ------------------------------------------------------------------------------------------------------
# preferred mask folder names per task (first found wins unless options["mask_dir"] says otherwise)
MASK_DIRS = {
    "lungs": ("lungs", "lung_masks", "lung", "masks", "labels", "mask"),
    "infection": ("ggo_consolidation", "infection", "lesions", "masks", "labels", "mask"),
}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES + VOLUME_SUFFIXES))


def _folders_sources(root: Path, task: str, options: dict) -> list[CaseSource]:
    images = root / options.get("image_dir", "images")
    mask_dir = options.get("mask_dir")
    if mask_dir is None:
        candidates = [root / n for n in MASK_DIRS[task] if (root / n).is_dir()]
        others = sorted(p for p in root.iterdir() if p.is_dir() and p != images and p not in candidates)
        folders = candidates or others
        if not folders:
            raise InputError(f"'{root}' has images/ but no mask folder", f"add one of {', '.join(MASK_DIRS[task])}/")
        mask_folder = folders[0]
    else:
        mask_folder = root / mask_dir
        if not mask_folder.is_dir():
            raise InputError(f"Mask folder '{mask_folder}' does not exist", "check options.mask_dir in the config")
    masks = {case_name(p): p for p in _image_files(mask_folder)}
    patient_pattern = options.get("patient_pattern")
    label_map = {int(k): int(v) for k, v in options.get("label_map", {}).items()} or None
    sources = []
    for path in _image_files(images):
        name = case_name(path)
        if name not in masks:
            continue
        patient = _patient_of(name, patient_pattern)
        sources.append(CaseSource(name, patient, lambda p=path, m=masks[name], n=name, pt=patient:
                                  _load_folder_case(p, m, n, pt, task, label_map)))
    return sources


def _load_folder_case(image_path: Path, mask_path: Path, name: str, patient: str, task: str,
                      label_map: dict[int, int] | None) -> Case:
    image = read_volume(image_path)
    raw = read_labelmap(mask_path, task).array.astype(np.int32)
    if raw.shape != image.shape and raw.shape[1:] == image.shape[1:][::-1]:
        raise InputError(f"Mask '{mask_path.name}' is transposed relative to its image", "export both the same way")
    _check_same_shape(image, raw, mask_path)
    if label_map:
        raw = map_values(raw, label_map)
    if task == "lungs":
        labels = lungs_by_side(image, raw, RIGHT_LUNG, LEFT_LUNG) if raw.max() >= 2 else lungs_by_side(image, raw > 0)
    else:
        labels = np.clip(raw, 0, CONSOLIDATION).astype(np.uint8)  # 0/255 masks were read as 0/1
    return Case(name, image, labels, patient, labels if task == "lungs" else None)


# ------------------------------------------------------------------------------------------------------
# Slicer .seg.nrrd
# ------------------------------------------------------------------------------------------------------
def _slicer_sources(root: Path, task: str, options: dict) -> list[CaseSource]:
    sources = []
    for seg in sorted(root.rglob("*.seg.nrrd")):
        name = seg.name[: -len(".seg.nrrd")]
        image = next((seg.parent / f"{name}{s}" for s in VOLUME_SUFFIXES
                      if s != ".seg.nrrd" and (seg.parent / f"{name}{s}").exists()), None)
        if image is None:
            continue
        sources.append(CaseSource(name, name, lambda i=image, s=seg, n=name: _load_slicer_case(i, s, n, task)))
    return sources


def _load_slicer_case(image_path: Path, seg_path: Path, name: str, task: str) -> Case:
    image = read_volume(image_path)
    segmentation = read_labelmap(seg_path, task)  # segments matched by name / terminology
    labels = _on_image_grid(segmentation, image)
    if task == "lungs":
        labels = lungs_by_side(image, labels, RIGHT_LUNG, LEFT_LUNG)
    return Case(name, image, labels, name, labels if task == "lungs" else None)


def _on_image_grid(labels: Volume, image: Volume) -> np.ndarray:
    """Segmentations are often stored cropped to their extent: resample onto the image (nearest)."""
    if labels.same_geometry(image):
        return np.asarray(labels.array, np.uint8)
    from lungseg_core.preprocessing.resample import resample_like

    return resample_like(labels.array.astype(np.uint8), labels, image)


# ------------------------------------------------------------------------------------------------------
# synthetic phantoms
# ------------------------------------------------------------------------------------------------------
def _phantom_sources(root: Path | None, task: str, options: dict) -> list[CaseSource]:
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
    if _first_existing(root, ["tr_im.nii.gz", "tr_im.nii"]) or (root / "rp_im").is_dir():
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

    ``options`` go to the reader: ``mask_dir`` / ``image_dir`` / ``label_map`` / ``patient_pattern``
    (folders, nnunet), ``effusion`` ("drop" or "consolidation", MedSeg), ``cases`` / ``shape`` / ``seed``
    (phantom). Raises :class:`InputError` naming the supported layouts when nothing usable is found.
    """
    if task not in TASKS:
        raise InputError(f"Unknown task '{task}'", f"use one of: {', '.join(TASKS)}")
    if layout == "phantom":
        sources = _phantom_sources(None, task, options)
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
    sources = _READERS[layout](root, task, options)
    if not sources:
        raise InputError(f"No labelled {task} cases found in '{root}' (layout '{layout}')",
                         f"check the folder against the layout: {LAYOUT_HELP[layout]}")
    notes = []
    if layout == "covid19_ct_seg" and task == "infection":
        notes.append("COVID-19-CT-Seg has no GGO/consolidation split: all infection is labelled GGO (1)")
    return Dataset(root, layout, task, sources, notes)
