"""Synthetic COVID-19-like lesions inserted into real lungs, with their exact infection mask.

Each lesion is an irregular blob: smoothed random noise plus a radial fall-off, thresholded, and clipped to
the lungs. Inside it the CT gets a textured density:

- ground-glass opacity (GGO): about -750..-300 HU; vessels (voxels originally above ~-200 HU) stay as they
  were, because GGO is hazy lung through which vessels remain visible;
- consolidation: about -100..+60 HU; air bronchograms (airway lumen originally below ~-930 HU after a
  little smoothing) stay air, as they do in real consolidated lung.

The lung labels are never changed: consolidated lung is still lung, which is what a learned lung model must
be taught and where thresholding fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume
from lungseg_core.labels import CONSOLIDATION, CONSOLIDATION_HU, GGO, GGO_HU

VESSEL_HU = -200.0  # voxels denser than this inside a GGO blob are vessels and are kept
BRONCHUS_HU = -930.0  # voxels (smoothed) darker than this inside consolidation are airway lumen and kept


@dataclass
class LesionSpec:
    """How many lesions of which kinds, and how big (equivalent diameter range in mm)."""

    count: tuple[int, int] = (1, 4)
    kinds: tuple[str, ...] = ("ggo", "consolidation")
    diameter_mm: tuple[float, float] = (15.0, 60.0)
    irregularity: float = 0.6  # weight of the noise against the round fall-off
    texture_hu: float = 40.0  # standard deviation of the smooth density texture inside a lesion
    # "anywhere" in the lungs; "subpleural": centred anywhere on the lung surface (mediastinal and
    # diaphragmatic too); "costal": centred on the surface against the chest wall, the usual place of
    # COVID-19 and pneumonia consolidation. Both open onto the pleura, so hole filling cannot bring such a
    # lesion back into the lung.
    placement: str = "anywhere"


def insert_lesions(
    ct: Volume,
    lungs: np.ndarray,
    spec: LesionSpec | None = None,
    seed: int | np.random.Generator | None = None,
) -> tuple[Volume, np.ndarray]:
    """Insert random lesions into ``ct`` inside ``lungs`` (> 0); returns (new CT, infection labels uint8).

    The returned CT keeps ``ct``'s geometry and dtype; ``lungs`` is left untouched and stays the right lung
    label for the new CT. Infection labels are 1 GGO, 2 consolidation (consolidation wins where they overlap).
    """
    spec = spec or LesionSpec()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    _check_inputs(ct, lungs, spec)
    lung_mask = np.asarray(lungs) > 0
    original = ct.array.astype(np.float32)
    out = original.copy()
    infection = np.zeros(ct.shape, np.uint8)
    candidates = _lesion_centres(lung_mask, spec.placement, tuple(ct.spacing[1::-1]))
    if candidates.size == 0:
        return ct.with_array(ct.array.copy()), infection

    for _ in range(int(rng.integers(spec.count[0], spec.count[1] + 1))):
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        center = np.array(np.unravel_index(candidates[int(rng.integers(len(candidates)))], ct.shape))
        box, blob = _irregular_blob(ct, center, rng.uniform(*spec.diameter_mm), spec.irregularity, rng)
        blob &= lung_mask[box]
        # work inside the blob's bounding box only: whole-CT filters would be slow on 512x512x300 scans
        paint = _paint_ggo if kind == "ggo" else _paint_consolidation
        paint(out[box], original[box], blob, infection[box], spec, rng)

    info = np.iinfo(ct.array.dtype) if np.issubdtype(ct.array.dtype, np.integer) else None
    if info is not None:
        out = np.clip(np.rint(out), info.min, info.max)
    new_ct = ct.with_array(out.astype(ct.array.dtype))
    new_ct.metadata["synthetic_lesions"] = True
    return new_ct, infection


PLACEMENTS = ("anywhere", "subpleural", "costal")
COSTAL_DEPTH_MM = 8.0  # how far inside the two lungs' outline a surface voxel still counts as costal


def _lesion_centres(lung_mask: np.ndarray, placement: str, spacing_yx: tuple[float, float]) -> np.ndarray:
    """Flat indices (a third of argwhere's memory on big CTs) of the voxels a lesion may be centred on."""
    if placement in ("subpleural", "costal"):
        surface = lung_mask & ~ndimage.binary_erosion(lung_mask, border_value=1)
        if placement == "costal":
            surface &= costal_zone(lung_mask, spacing_yx)
        if surface.any():
            return np.flatnonzero(surface)
    return np.flatnonzero(lung_mask)


def costal_zone(lung_mask: np.ndarray, spacing_yx: tuple[float, float], depth_mm: float = COSTAL_DEPTH_MM) -> np.ndarray:
    """Voxels near the outline (per-slice convex hull) of both lungs together: the chest-wall side.

    The mediastinum, the heart and the diaphragm dome lie between or inside the lungs on an axial slice, so
    they are deep inside that outline; the ribs bound it. Surface voxels near it face the chest wall.
    """
    from skimage.morphology import convex_hull_image

    zone = np.zeros(lung_mask.shape, bool)
    for z in np.flatnonzero(lung_mask.reshape(len(lung_mask), -1).any(axis=1)):
        hull = convex_hull_image(lung_mask[z])
        zone[z] = hull & (ndimage.distance_transform_edt(hull, sampling=spacing_yx) <= depth_mm)
    return zone


def _check_inputs(ct: Volume, lungs: np.ndarray, spec: LesionSpec) -> None:
    if ct.intensity != "hu":
        raise InputError(
            f"Lesion synthesis needs a CT in Hounsfield units, '{ct.name}' has {ct.intensity} intensities",
            "use HU CTs (NIfTI/NRRD/DICOM) as lesion hosts",
        )
    if tuple(np.shape(lungs)) != ct.shape:
        raise InputError(f"Lung labels {np.shape(lungs)} do not match the CT {ct.shape}", "give the CT's own lung labels")
    bad = sorted(set(spec.kinds) - {"ggo", "consolidation"})
    if bad or not spec.kinds:
        raise InputError(f"Unknown lesion kind(s) {bad or '(none)'}", "use 'ggo' and/or 'consolidation'")
    if spec.placement not in PLACEMENTS:
        raise InputError(f"Unknown lesion placement '{spec.placement}'", f"use one of {', '.join(PLACEMENTS)}")


def _irregular_blob(ct: Volume, center: np.ndarray, diameter_mm: float, irregularity: float,
                    rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray]:
    """(bounding box, boolean mask inside it) of one irregular blob around ``center`` (voxel index)."""
    spacing_zyx = np.asarray(ct.spacing[::-1], dtype=float)
    radius_vox = np.maximum(diameter_mm / 2 / spacing_zyx, 1.0)
    if ct.is_2d or ct.shape[0] == 1:
        radius_vox[0] = 0.5  # a single slice: no extent along z
    half = np.ceil(radius_vox * 1.6).astype(int)
    lo = np.maximum(center - half, 0)
    hi = np.minimum(center + half + 1, ct.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grid = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
    radius = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radius_vox)))
    noise = ndimage.gaussian_filter(rng.standard_normal(radius.shape), sigma=np.maximum(radius_vox / 3, 0.5))
    noise /= noise.std() + 1e-6
    # the noise bends the sphere's surface: lobulated, asymmetric, sometimes split blobs
    return box, (1.0 - radius) + irregularity * 0.35 * noise > 0.0


def _texture(shape: tuple[int, ...], std: float, rng: np.random.Generator) -> np.ndarray:
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.5)
    return texture / (texture.std() + 1e-6) * std


def _paint_ggo(out, original, blob, infection, spec, rng) -> None:
    base = rng.uniform(GGO_HU[0] + 100, GGO_HU[1] - 100)
    density = np.clip(base + _texture(out.shape, spec.texture_hu, rng), *GGO_HU)
    parenchyma = blob & (original <= VESSEL_HU) & (infection != CONSOLIDATION)
    # GGO raises the density of aerated lung; never lower a voxel that is already denser
    out[parenchyma] = np.maximum(original[parenchyma], density[parenchyma])
    infection[blob & (infection != CONSOLIDATION)] = GGO


def _paint_consolidation(out, original, blob, infection, spec, rng) -> None:
    base = rng.uniform(CONSOLIDATION_HU[0] + 40, CONSOLIDATION_HU[1] - 40)
    density = np.clip(base + _texture(out.shape, spec.texture_hu / 2, rng), *CONSOLIDATION_HU)
    airway = ndimage.gaussian_filter(original, sigma=0.7) < BRONCHUS_HU
    solid = blob & ~airway
    out[solid] = density[solid]
    infection[blob] = CONSOLIDATION
