"""Lung mask post-processing: keep the lungs, fill holes, split right/left in patient space.

Used after the classical method and after every learned model, so every function accepts a binary mask or
a 1 (right) / 2 (left) labelmap in numpy (z, y, x) order with the geometry of a :class:`Volume`.
Sizes are in millimetres / millilitres so results do not depend on the voxel grid.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from scipy import ndimage

from lungseg_core.io.volume import Volume, patient_left_score, sides_swapped
from lungseg_core.labels import LEFT_LUNG, RIGHT_LUNG
from lungseg_core.preprocessing.cropping import BODY_THRESHOLD_HU, bounding_box
from lungseg_core.preprocessing.orientation import CanonicalView

log = logging.getLogger(__name__)

# A second lung component must hold at least this fraction of the largest one; smaller ones are islands,
# bowel gas or airway pieces.
MIN_SECOND_LUNG_FRACTION = 0.08
# Components smaller than this are never lungs (mL), the largest one included (3D); protects against noise on
# tiny inputs and against a pocket of bowel gas in a scan without lungs.
MIN_LUNG_ML = 5.0


# ----------------------------------------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------------------------------------
def axial_axis(volume: Volume) -> int:
    """The numpy axis that runs head-foot (0 for ordinary axial storage)."""
    return CanonicalView(volume).perm[0]


def _slice_structure(axis: int) -> np.ndarray:
    """4-connectivity inside each plane normal to ``axis``, no connection across planes."""
    structure = np.zeros((3, 3, 3), bool)
    plane = [slice(None)] * 3
    plane[axis] = 1
    structure[tuple(plane)] = ndimage.generate_binary_structure(2, 1)
    return structure


# ----------------------------------------------------------------------------------------------------------
# generic mask operations
# ----------------------------------------------------------------------------------------------------------
def fill_holes(mask: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Fill background regions not connected to the array border.

    ``axis=None`` fills in 3D; an integer fills every 2D plane normal to that axis (border = plane edges).
    Implemented with one labelling pass, which is much faster than scipy's iterative fill on CT volumes.
    Only the mask's bounding box plus one background voxel is labelled: everything outside the box is
    background reaching the border, and a region inside touches the box edge exactly when it reaches the
    array border, so the result is the same as on the whole array (the lungs are a fraction of a CT).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    box = bounding_box(mask, 1)
    out = mask.copy()
    out[box] = _fill_holes_everywhere(mask[box], axis)
    return out


def _fill_holes_everywhere(mask: np.ndarray, axis: int | None) -> np.ndarray:
    structure = ndimage.generate_binary_structure(3, 1) if axis is None else _slice_structure(axis)
    background, _ = ndimage.label(~mask, structure)
    faces = [ax for ax in range(3) if ax != axis]
    border = np.zeros(background.max() + 1, bool)
    for ax in faces:
        for index in (0, -1):
            border[np.take(background, index, axis=ax)] = True
    border[0] = True  # label 0 is the mask itself
    return mask | ~border[background]


def remove_small_components(mask: np.ndarray, volume: Volume, min_volume_ml: float) -> np.ndarray:
    """Drop 3D connected components (26-connected) smaller than ``min_volume_ml``; keeps label values."""
    mask = np.asarray(mask)
    labels, count = ndimage.label(mask > 0, np.ones((3, 3, 3), bool))
    if count == 0:
        return mask.copy()
    sizes_ml = np.bincount(labels.ravel())[1:] * volume.voxel_volume_ml
    keep = np.concatenate([[False], sizes_ml >= min_volume_ml])
    return np.where(keep[labels], mask, 0).astype(mask.dtype)


def _ball(radius_mm: float, spacing_zyx: tuple[float, float, float], planar_axis: int | None = None) -> np.ndarray:
    """Ellipsoidal structuring element of a physical radius on an anisotropic grid."""
    half = [max(0, int(np.floor(radius_mm / s))) for s in spacing_zyx]
    if planar_axis is not None:
        half[planar_axis] = 0
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist = sum((g * s) ** 2 for g, s in zip(grids, spacing_zyx))
    return dist <= radius_mm**2 + 1e-6


# ----------------------------------------------------------------------------------------------------------
# left / right split
# ----------------------------------------------------------------------------------------------------------
def _two_seeds(mask: np.ndarray, distance: np.ndarray, spacing_zyx, max_depth_mm: float) -> np.ndarray | None:
    """Erode (thresholds on the distance map) until two big components appear; their labels 1/2 or None."""
    if mask.sum() == 0:
        return None
    step = max(min(spacing_zyx), 0.5)
    depth = 0.0
    while depth <= max_depth_mm:
        core = distance > depth
        labels, count = ndimage.label(core)
        if count >= 2:
            sizes = np.bincount(labels.ravel())[1:]
            order = np.argsort(sizes)[::-1]
            if sizes[order[1]] >= 0.1 * sizes[order[0]]:
                seeds = np.zeros(mask.shape, np.uint8)
                seeds[labels == order[0] + 1] = 1
                seeds[labels == order[1] + 1] = 2
                return seeds
        if count == 0:
            return None
        depth += step
    return None


def _assign_to_seeds(mask: np.ndarray, seeds: np.ndarray, spacing_zyx, distance: np.ndarray | None = None) -> np.ndarray:
    """Give each mask voxel the seed label reached through the mask at the deepest 'neck' (watershed on
    the negated distance map; ``distance`` is that map when the caller already has it).

    Only unseeded regions that touch seeds of more than one label need the watershed: a region touching
    one label can only be flooded from it (and one touching none stays 0), so those are assigned directly.
    The watershed and its full-resolution distance map, the slow part for network outputs that are
    already labelled right/left, run only when some region is contested, and then exactly as before.
    """
    from skimage.segmentation import watershed

    seeds = np.where(mask, seeds, 0).astype(np.uint8)
    free = mask & (seeds == 0)
    regions, count = ndimage.label(free)  # face connectivity, as the watershed's default neighbourhood
    if count == 0:
        return seeds
    touched = _seed_labels_touched(regions, count, seeds)
    if (touched.sum(axis=1) <= 1).all():
        owner = np.argmax(touched, axis=1).astype(np.uint8)  # 0 for a region touching no seed
        owner[0] = 0
        return np.where(free, owner[regions], seeds)
    if distance is None:
        distance = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    return watershed(-distance, seeds, mask=mask).astype(np.uint8)


def _seed_labels_touched(regions: np.ndarray, count: int, seeds: np.ndarray) -> np.ndarray:
    """touched[region, label]: does the region share a face with a seed voxel of that label?"""
    touched = np.zeros((count + 1, int(seeds.max()) + 1), bool)
    for axis in range(regions.ndim):
        low = [slice(None)] * regions.ndim
        high = [slice(None)] * regions.ndim
        low[axis], high[axis] = slice(None, -1), slice(1, None)
        for a, b in ((tuple(low), tuple(high)), (tuple(high), tuple(low))):
            region, seed = regions[a], seeds[b]
            pair = (region > 0) & (seed > 0)
            touched[region[pair], seed[pair]] = True
    touched[:, 0] = False
    return touched


def _two_parts(mask: np.ndarray, spacing_zyx, max_depth_mm: float) -> np.ndarray | None:
    """The mask split into parts 1 and 2 (sides not decided yet), or None when it is one lung."""
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    distance = None
    if count >= 2 and sizes[order[1]] >= MIN_SECOND_LUNG_FRACTION * sizes[order[0]]:
        # already apart: grow the two big components over the small pieces
        seeds = np.zeros(mask.shape, np.uint8)
        seeds[labels == order[0] + 1] = 1
        seeds[labels == order[1] + 1] = 2
    else:
        distance = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
        seeds = _two_seeds(mask, distance, spacing_zyx, max_depth_mm)
    if seeds is None:
        return None
    return _assign_to_seeds(mask, seeds, spacing_zyx, distance)


def _display_layout_transposed(volume: Volume, parts: np.ndarray) -> bool:
    """For 2D screenshots without geometry: are the two lungs stacked vertically?

    Some public slice collections (MedSeg / COVID-SemiSeg from Inf-Net) store slices transposed, spine on
    the right. Transposing a radiological display puts the patient's right at the top, so we use rows there.
    """
    if volume.spacing_known:
        return False
    centres = [np.argwhere(parts == k).mean(axis=0) for k in (1, 2)]
    dz, dy, dx = np.abs(centres[0] - centres[1])
    return dy > dx


def _side_of_single(volume: Volume, component: np.ndarray, body_centre_x: float | None) -> int:
    """Side of a lone lung: its centroid compared with the body midline (or the image centre)."""
    x = patient_left_score(volume, component)
    if body_centre_x is None:
        centre = np.array(volume.shape, float)[None] / 2 - 0.5
        body_centre_x = float(volume.zyx_to_lps(centre)[0, 0])
    return LEFT_LUNG if x > body_centre_x else RIGHT_LUNG


def split_left_right(
    mask: np.ndarray, volume: Volume, max_depth_mm: float = 30.0, body_centre_x: float | None = None
) -> np.ndarray:
    """Label a lung mask 1 = right, 2 = left, even when the lungs touch at the anterior/posterior junction.

    The mask is eroded (thresholds on one Euclidean distance map in mm) until two large components appear;
    every voxel is then assigned by watershed on the distance map, which cuts at the narrowest neck. Sides
    come from patient space (LPS x of each part's centroid), so any storage orientation works. With a single
    lung (or no separable pair) the whole mask gets the side of its centroid relative to the midline.
    """
    mask = np.asarray(mask) > 0
    out = np.zeros(mask.shape, np.uint8)
    if not mask.any():
        return out
    box = bounding_box(mask, 1)  # the work happens in the lungs' box (a fraction of the CT), same result
    parts_in_box = _two_parts(mask[box], tuple(volume.spacing[::-1]), max_depth_mm)
    if parts_in_box is None:
        out[mask] = _side_of_single(volume, mask, body_centre_x)
        return out
    parts = np.zeros(mask.shape, np.uint8)
    parts[box] = parts_in_box
    if _display_layout_transposed(volume, parts):
        first_is_right = np.argwhere(parts == 1)[:, 1].mean() < np.argwhere(parts == 2)[:, 1].mean()
    else:
        first_is_right = patient_left_score(volume, parts == 1) < patient_left_score(volume, parts == 2)
    out[parts == 1] = RIGHT_LUNG if first_is_right else LEFT_LUNG
    out[parts == 2] = LEFT_LUNG if first_is_right else RIGHT_LUNG
    return out


# ----------------------------------------------------------------------------------------------------------
# clean-up of any lung prediction
# ----------------------------------------------------------------------------------------------------------
def select_lung_components(mask: np.ndarray, volume: Volume) -> np.ndarray:
    """Keep the largest component (in 3D only if it holds ``MIN_LUNG_ML``) and, if present, a second one of
    comparable size at lung height.

    A second component must hold ``MIN_SECOND_LUNG_FRACTION`` of the largest and (in 3D) reach above the
    largest one's centre: bowel / stomach gas lies under the diaphragm, below the middle of the lungs.
    """
    mask = np.asarray(mask) > 0
    if not mask.any():
        return mask
    box = bounding_box(mask)  # labelling the box numbers components as on the whole array, in less time
    labels, count = ndimage.label(mask[box])
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    min_lung_voxels = 0 if volume.is_2d else MIN_LUNG_ML / volume.voxel_volume_ml
    if sizes[order[0]] < min_lung_voxels:  # e.g. a pocket of bowel gas in a scan without lungs
        return np.zeros(mask.shape, bool)
    keep = [order[0] + 1]
    min_voxels = max(MIN_SECOND_LUNG_FRACTION * sizes[order[0]], min_lung_voxels)
    canon = None if volume.is_2d else CanonicalView(volume).forward(labels)
    for index in order[1:]:
        if sizes[index] < min_voxels:
            break
        if canon is not None:
            first_centre = ndimage.center_of_mass(canon == order[0] + 1)[0]
            top = np.nonzero((canon == index + 1).any(axis=(1, 2)))[0].max()
            if top < first_centre:
                continue
        keep.append(index + 1)
        break
    out = np.zeros(mask.shape, bool)
    out[box] = np.isin(labels, keep)
    return out


def clean_lungs(labels_or_mask: np.ndarray, volume: Volume, closing_mm: float = 0.0) -> np.ndarray:
    """Keep the two lungs, fill their holes (vessels, nodules), and label them 1 right / 2 left.

    Accepts a binary mask or a 1/2 labelmap. With a labelmap the two labels seed the split (models separate
    the lungs well), but sides are re-checked in patient space, so a model that swapped sides is corrected.
    """
    labels_or_mask = np.asarray(labels_or_mask)
    if labels_or_mask.shape != volume.shape:
        raise ValueError(f"mask shape {labels_or_mask.shape} differs from volume shape {volume.shape}")
    axial = axial_axis(volume)
    mask = select_lung_components(labels_or_mask > 0, volume)
    mask = fill_holes(mask, axis=axial)
    mask = fill_holes(mask)
    if closing_mm > 0:
        mask = _close(mask, volume, closing_mm, axial)
    has_both = all(np.any(labels_or_mask == value) for value in (RIGHT_LUNG, LEFT_LUNG))
    if not has_both or not mask.any() or not volume.spacing_known:
        return split_left_right(mask, volume)
    box = bounding_box(mask, 1)  # seeds and watershed in the lungs' box: a fraction of the CT, same result
    mask_in_box, labels_in_box = mask[box], labels_or_mask[box]
    seeds = np.zeros(mask_in_box.shape, np.uint8)
    for value in (RIGHT_LUNG, LEFT_LUNG):
        part, n = ndimage.label((labels_in_box == value) & mask_in_box)
        if n:
            seeds[part == np.argmax(np.bincount(part.ravel())[1:]) + 1] = value
    if not (seeds == RIGHT_LUNG).any() or not (seeds == LEFT_LUNG).any():
        return split_left_right(mask, volume)
    parts = np.zeros(mask.shape, np.uint8)
    parts[box] = _assign_to_seeds(mask_in_box, seeds, tuple(volume.spacing[::-1]))
    if sides_swapped(volume, parts == RIGHT_LUNG, parts == LEFT_LUNG):
        log.warning("lung labels were on the wrong patient sides; swapped them")
        parts = np.where(parts > 0, 3 - parts, 0).astype(np.uint8)
    return parts


def _close(mask: np.ndarray, volume: Volume, radius_mm: float, axial: int) -> np.ndarray:
    """In-plane closing (rounds juxtapleural nodules back in) without letting the lungs merge."""
    spacing_zyx = tuple(volume.spacing[::-1])
    structure = _ball(radius_mm, spacing_zyx, planar_axis=axial)
    pad = [(s // 2, s // 2) for s in structure.shape]
    padded = np.pad(mask, pad)
    closed = ndimage.binary_closing(padded, structure)[tuple(slice(p, -p or None) for p, _ in pad)]
    return mask | closed


# ----------------------------------------------------------------------------------------------------------
# classical lungs + learned dense lung

# Below this a voxel is air (trachea, bronchi, bowel gas): a network never adds it to the classical lungs.
# Consolidation (about -100..+60 HU) and its partial-volume rim (down to about -600 HU) are above it.
DENSE_LUNG_MIN_HU = -700.0


# The network's dense lung narrower than this in-plane is dropped: consolidation is bulky, while a thin rim
# along the pleura or the heart is the network's partial-volume error on healthy lung.
THINNEST_DENSE_LUNG_MM = 6.0

# Dense tissue the network calls lung but the chest-wall gate leaves out (mL), from which a case holds much more
# than a healthy CT gives: it gets a note, and the gate's regions the network is sure of are kept
# (``CONFIDENT_DENSE_LUNG_PROBABILITY``). Consolidation against the mediastinum or the diaphragm is left out this
# way. So are the heart and the liver dome, which a network mistakes for lung on thick slices. Chosen with the
# earlier resunet: 96 mL on CTChest4 (10 mm slices, healthy), under 10 mL on LIDC-IDRI-0001/0002 and at most
# 30 mL with them made 5-10 mm thick; 222-823 mL in 10 of 12 seeds with large consolidations inserted on
# CTChest4's lung surfaces. The shipped Lite0 network: 24 mL, under 2 mL, at most 1.3 mL; 102-812 mL (9 of 12 over).
# Healthy CTs: benchmarks/healthy_left_out.py.
MUCH_DENSE_LUNG_LEFT_OUT_ML = 200.0

# The network's mean lung probability over each region 1..count of an integer array: (regions, count) -> means.
RegionProbability = Callable[[np.ndarray, int], np.ndarray]

# Where much is left out, an in-plane region the gate drops is still added when the network's mean lung probability
# over it is at least this. Left-out consolidation is mostly certain (about 60% of its voxels at p >= 0.99 on
# CTChest4); the heart and the liver dome less so, though not always. Applied everywhere, 0.85-0.93 gained alike on
# CTChest4's any-surface lesions (docs/models.md); the highest of those, because it adds the least heart where a
# healthy thick-slice CT passes the line above.
CONFIDENT_DENSE_LUNG_PROBABILITY = 0.9


def _without_thin_parts(mask: np.ndarray, lungs: np.ndarray, volume: Volume, width_mm: float, axial: int) -> np.ndarray:
    """``mask`` opened in-plane with a disk ``width_mm`` across (at least 3 voxels): parts narrower go. Holes
    that ``mask`` and the ``lungs`` enclose (air bronchograms in consolidation) count as part of ``mask``, so
    thin walls around them stay. ``axial`` is the head-foot array axis."""
    spacing_zyx = tuple(volume.spacing[::-1])
    radius_mm = max(width_mm / 2, min(s for axis, s in enumerate(spacing_zyx) if axis != axial))
    box = bounding_box(mask, 1)
    opened = np.zeros_like(mask)
    solid = fill_holes(mask[box] | lungs[box], axis=axial) & ~lungs[box]
    opened[box] = ndimage.binary_opening(solid, _ball(radius_mm, spacing_zyx, planar_axis=axial)) & mask[box]
    return opened


def dense_lung_stages(lungs: np.ndarray, network_lung: np.ndarray, hu: np.ndarray, volume: Volume,
                      region_lung_probability: RegionProbability | None = None) -> dict[str, np.ndarray]:
    """The network's lung outside the classical ``lungs``, after each rule of :func:`add_dense_lung` in turn:
    ``"network"`` (all of it), ``"dense"`` (denser than air), ``"wide"`` (at least ``THINNEST_DENSE_LUNG_MM``
    across), ``"kept"`` (what passes the gate: open to the chest wall, or a region the network is sure of where
    much is left out), ``"open"`` (open to the chest wall). Each is a subset of the one before; ``add_dense_lung``
    adds ``"kept"`` where it touches a lung in its own plane. Kept apart so a benchmark can tell which rule dropped
    a voxel (``benchmarks/lung_misses.py``). ``region_lung_probability(regions, count)``: the network's mean lung
    probability over each region 1..count of an integer array on the same grid, needed to keep confident regions;
    without it ``"kept"`` is ``"open"``."""
    lungs = np.asarray(lungs) > 0
    stages = {"network": np.asarray(network_lung, bool) & ~lungs}
    stages["dense"] = stages["network"] & (np.asarray(hu) >= DENSE_LUNG_MIN_HU)
    stages["wide"] = stages["kept"] = stages["open"] = np.zeros_like(lungs)  # nothing to add, or nothing to add it to
    if stages["dense"].any() and lungs.any():
        stages["wide"] = _without_thin_parts(stages["dense"], lungs, volume, THINNEST_DENSE_LUNG_MM,
                                             axial_axis(volume))
    if stages["wide"].any():
        stages["open"] = stages["wide"] & open_to_chest_wall(stages["wide"], lungs, hu, volume)
        confident = _confident_left_out(stages, region_lung_probability, volume)
        stages["kept"] = stages["open"] if confident is None else stages["open"] | confident
    return stages


def _confident_left_out(stages: dict[str, np.ndarray], region_lung_probability: RegionProbability | None,
                        volume: Volume) -> np.ndarray | None:
    """The in-plane regions the gate leaves out whose mean lung probability is at least
    ``CONFIDENT_DENSE_LUNG_PROBABILITY``, where it leaves out ``MUCH_DENSE_LUNG_LEFT_OUT_ML`` or more; else None
    (no volume made: the usual case). Below that line what the gate drops is the heart or the liver dome as often
    as consolidation, so the gate alone decides."""
    if region_lung_probability is None:
        return None
    left_out = stages["wide"] & ~stages["open"]
    if np.count_nonzero(left_out) * volume.voxel_volume_ml < MUCH_DENSE_LUNG_LEFT_OUT_ML:
        return None
    regions, count = ndimage.label(left_out, structure=_slice_structure(axial_axis(volume)))
    means = np.asarray(region_lung_probability(regions, count), float)
    return np.concatenate([[False], means >= CONFIDENT_DENSE_LUNG_PROBABILITY])[regions]


def left_out_dense_lung_ml(stages: dict[str, np.ndarray], volume: Volume) -> float:
    """mL of the network's dense lung that the chest-wall gate leaves out (the ``"wide"`` stage but not
    ``"open"`` of :func:`dense_lung_stages`), before confident regions are kept."""
    return float(np.count_nonzero(stages["wide"] & ~stages["open"]) * volume.voxel_volume_ml)


def confident_dense_lung_ml(stages: dict[str, np.ndarray], volume: Volume) -> float:
    """mL of that left-out dense lung kept because the network is sure of it (``"kept"`` but not ``"open"``)."""
    return float(np.count_nonzero(stages["kept"] & ~stages["open"]) * volume.voxel_volume_ml)


def left_out_dense_lung_notes(stages: dict[str, np.ndarray], volume: Volume) -> list[str]:
    """A note when the chest-wall gate leaves out much dense tissue that the network calls lung: the lungs, and so
    the infection inside them, may then miss consolidation against the mediastinum or the diaphragm, which
    thresholding cannot see either; or what the network was sure of was added and may be the heart or liver."""
    left_out_ml = left_out_dense_lung_ml(stages, volume)
    if left_out_ml < MUCH_DENSE_LUNG_LEFT_OUT_ML:
        return []
    added_ml = confident_dense_lung_ml(stages, volume)
    if added_ml == 0:
        return [f"{left_out_ml:.0f} mL of dense tissue beside the lungs looked like lung to the network but was left "
                "out, because lung lies beyond it: consolidation against the mediastinum or the diaphragm (then "
                "missing from the lungs and the infection), or the heart or liver on thick slices; look at the image"]
    return [f"{left_out_ml:.0f} mL of dense tissue beside the lungs, with lung beyond it, looked like lung to the "
            "network: consolidation against the mediastinum or the diaphragm, or the heart or liver on thick slices. "
            f"The {added_ml:.0f} mL it was sure of (mean probability at least {CONFIDENT_DENSE_LUNG_PROBABILITY:g}) "
            f"was added to the lungs, the other {left_out_ml - added_ml:.0f} mL left out (if consolidation, missing "
            "from the lungs and the infection); look at the image"]


def add_dense_lung(lungs: np.ndarray, network_lung: np.ndarray, hu: np.ndarray, volume: Volume,
                   stages: dict[str, np.ndarray] | None = None,
                   region_lung_probability: RegionProbability | None = None) -> np.ndarray:
    """The classical ``lungs`` (1 right / 2 left) plus the dense lung that a network sees and thresholding cannot.

    Thresholding leaves consolidated lung out, and where consolidation reaches the chest wall hole filling
    cannot bring it back. A network taught that consolidated lung is still lung fills that gap, but on its
    own it is less exact than thresholding at the lung surface. So the network only adds: its lung voxels that
    are not classical lung, denser than air (``DENSE_LUNG_MIN_HU``), open to the chest wall
    (:func:`open_to_chest_wall`; where that gate leaves out ``MUCH_DENSE_LUNG_LEFT_OUT_ML`` or more, also its
    regions the network is sure of, given ``region_lung_probability``), at least ``THINNEST_DENSE_LUNG_MM`` across,
    in in-plane regions that touch a classical lung in their own plane; each region joins the lung it touches most;
    air the network calls lung is added only where the result encloses it in-plane (air bronchograms). Classical
    voxels are never removed. ``stages``: :func:`dense_lung_stages` of the same inputs, when the caller already
    has them.
    """
    lungs = np.asarray(lungs)
    if stages is None:
        stages = dense_lung_stages(lungs, network_lung, hu, volume, region_lung_probability)
    candidates = stages["kept"]
    if not candidates.any():
        return lungs.astype(np.uint8)
    axial = axial_axis(volume)
    box = bounding_box(candidates | (lungs > 0), 1)
    # in-plane regions that touch a lung in their own plane: dense tissue that only meets a lung in the next
    # plane (at the apices, above the first rib) is not lung
    regions, count = ndimage.label(candidates[box], structure=_slice_structure(axial))
    touching = _voxels_touching(regions, count, lungs[box], (RIGHT_LUNG, LEFT_LUNG), in_plane_of=axial)
    side_of_region = np.where(touching.max(axis=0) > 0, np.argmax(touching, axis=0) + 1, 0).astype(np.uint8)
    out = lungs.astype(np.uint8, copy=True)
    in_box = out[box]
    added = side_of_region[regions]
    in_box[added > 0] = added[added > 0]
    network_in_box = np.asarray(network_lung, bool)[box]
    for value in (RIGHT_LUNG, LEFT_LUNG):  # air bronchograms: network lung enclosed by the added consolidation
        in_box[fill_holes(in_box == value, axis=axial) & (in_box == 0) & network_in_box] = value
    return out


def _voxels_touching(regions: np.ndarray, count: int, labels: np.ndarray, values: tuple[int, ...],
                     in_plane_of: int | None = None) -> np.ndarray:
    """(len(values), count + 1): per label value, how many voxels of each region share a face with it.

    Looks only at the regions' own voxels and their 6 neighbours (4 in the planes normal to ``in_plane_of``),
    not at whole-box dilations: the regions are a small fraction of the box. Region 0 (background) counts
    nothing.
    """
    coords = np.nonzero(regions)
    owner = regions[coords]
    touching = np.zeros((len(values), count + 1), np.int64)
    for row, value in enumerate(values):
        near = np.zeros(len(owner), bool)
        for axis in range(regions.ndim):
            if axis == in_plane_of:
                continue
            for shift in (-1, 1):
                moved = coords[axis] + shift
                valid = (moved >= 0) & (moved < regions.shape[axis])
                neighbour = tuple(np.where(valid, moved, 0) if a == axis else coords[a] for a in range(regions.ndim))
                near |= valid & (labels[neighbour] == value)
        touching[row] = np.bincount(owner[near], minlength=count + 1)
    return touching


def open_to_chest_wall(candidates: np.ndarray, lungs: np.ndarray, hu: np.ndarray, volume: Volume) -> np.ndarray:
    """The ``candidates`` with no lung beyond them on the ray out from the body's centre, slice by slice.

    Consolidation that thresholding misses lies between the lung and the chest wall: nothing but chest wall
    is further out. The liver dome and the heart, which a 2D network mistakes for lung at the bases on thick
    slices, lie inside a lung's curve: lung lies further out on the same ray (measured on CTChest4 with the
    checks of ``benchmarks/accuracy_lungs.py``). A ray ends where it leaves the body: tissue above
    ``BODY_THRESHOLD_HU`` with its holes filled, found only in the slices that hold candidates (a few
    2D passes instead of labelling the whole CT, which would dominate time and memory).
    """
    view = CanonicalView(volume)
    candidates_c, lungs_c, hu_c = view.forward(np.asarray(candidates, bool)), view.forward(lungs), view.forward(hu)
    planes = np.flatnonzero(candidates_c.any(axis=(1, 2)))
    body = fill_holes(hu_c[planes] > BODY_THRESHOLD_HU, axis=0)  # a ray leaving it has left the chest
    points = np.argwhere(candidates_c[planes])  # (plane, row, column); all planes marched together
    centres = _plane_centres(body)[points[:, 0]]
    covered = _lung_beyond(points, centres, lungs_c[planes], body, np.asarray(view.spacing_zyx[1:], float))
    open_c = np.zeros(candidates_c.shape, bool)
    open_c[planes[points[~covered, 0]], points[~covered, 1], points[~covered, 2]] = True
    return np.ascontiguousarray(view.backward(open_c))


def _plane_centres(masks: np.ndarray) -> np.ndarray:
    """(plane, row, column) of each plane's centre of mass; the plane's middle where it is empty."""
    sizes = masks.sum(axis=(1, 2))
    rows, columns = np.indices(masks.shape[1:])
    centres = np.column_stack([np.arange(len(masks)), np.einsum("zyx,yx->z", masks, rows),
                               np.einsum("zyx,yx->z", masks, columns)]).astype(float)
    centres[:, 1:] /= np.maximum(sizes, 1)[:, None]
    centres[sizes == 0, 1:] = np.asarray(masks.shape[1:]) / 2
    return centres


def _lung_beyond(points: np.ndarray, centres: np.ndarray, lungs: np.ndarray, body: np.ndarray,
                 spacing_yx: np.ndarray) -> np.ndarray:
    """For each (plane, row, column) point: does the in-plane ray from its plane's centre (same layout)
    through it meet lung further out before it leaves the body? Marched in steps of one voxel; a ray stops
    as soon as it is decided, and at the latest where it leaves the box of its plane's lung (a straight ray
    never comes back into a box), so rays through the chest wall end at once."""
    step_mm = float(spacing_yx.min())
    spacing = np.concatenate([[1.0], spacing_yx])
    outward_mm = (points - centres) * spacing
    outward_mm[:, 0] = 0.0
    unit_vox = outward_mm / (np.linalg.norm(outward_mm, axis=1, keepdims=True) + 1e-6) / spacing
    last_mm = _distance_to_leave_box(points, unit_vox, lungs)
    covered = np.zeros(len(points), bool)
    active = np.arange(len(points))
    distance = step_mm
    while active.size:
        active = active[last_mm[active] >= distance]
        ahead = np.rint(points[active] + unit_vox[active] * distance).astype(np.intp)
        hit = lungs[ahead[:, 0], ahead[:, 1], ahead[:, 2]]
        covered[active[hit]] = True
        active = active[~hit & body[ahead[:, 0], ahead[:, 1], ahead[:, 2]]]
        distance += step_mm
    return covered


def _distance_to_leave_box(points: np.ndarray, unit_vox: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Distance along each ray (``points`` + ``unit_vox`` x distance, per plane of ``mask``) past which it is
    outside its plane's bounding box of ``mask`` for good; negative where the ray never meets that box."""
    last = np.full(len(points), np.inf)
    for axis, extent in ((1, mask.any(axis=2)), (2, mask.any(axis=1))):  # (plane, row) and (plane, column)
        present = extent.any(axis=1)
        # 0.49: a position within the box rounds to an index within it (and within the array)
        low = np.argmax(extent, axis=1) - 0.49
        high = extent.shape[1] - 1 - np.argmax(extent[:, ::-1], axis=1) + 0.49
        speed, position, plane = unit_vox[:, axis], points[:, axis], points[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            exit_at = np.where(speed > 0, (high[plane] - position) / speed,
                               np.where(speed < 0, (low[plane] - position) / speed, np.inf))
        inside_now = (position >= low[plane]) & (position <= high[plane])
        last = np.minimum(last, np.where((speed == 0) & ~inside_now | ~present[plane], -1.0, exit_at))
    return last
