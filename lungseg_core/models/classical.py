"""Classical lung and infection segmentation: thresholds and morphology, no weights.

Lungs (3D, Hounsfield units)
    1. Work on a grid of about 2 mm (integer block means; returned labels are full resolution).
    2. Air = HU < -400. -400 is halfway between aerated lung (about -850) and soft tissue (about +40), so the
       boundary sits at 50 % partial volume, which gives unbiased lung volumes; padding outside the scan
       field of view (-2048, -3024) is "air" connected to the image edge and therefore outside the body.
    3. Air not connected to the slice edge (per axial slice) is inside the body: lungs, airways, bowel gas.
    4. The trachea is found in the upper slices (small round midline air), the airway tree is grown from it
       with an explosion-controlled threshold, and trachea + main bronchi are removed.
    5. The largest component and a second one at lung height are kept (bowel gas lies below the lungs).
    6. Holes (vessels, nodules) are filled per slice and in 3D; each lung is closed in-plane to take back
       juxtapleural nodules; touching lungs are split by erosion + watershed, sides from patient space.
    7. Back on the full grid: the low-resolution interior plus full-resolution air near the boundary.

Lungs (2D display screenshots, 0-255 lung window): Otsu threshold on the smoothed image, dark components not
touching the image edge, the two largest kept, holes filled, split left/right (radiological display).

Infection: a documented weak baseline, see :func:`classical_infection`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lungseg_core.io.volume import Volume
from lungseg_core.labels import CONSOLIDATION, GGO
from lungseg_core.postprocessing.lungs import (
    CanonicalView,
    _ball,
    fill_holes,
    remove_small_components,
    select_lung_components,
    split_left_right,
)

AIR_THRESHOLD_HU = -400.0
WORKING_SPACING_MM = 2.0
# Explosion-controlled airway growing: thresholds tried in turn; growth stops before the volume explodes.
AIRWAY_STEP_HU, AIRWAY_MAX_HU = 10.0, -750.0
AIRWAY_MAX_ML = 250.0
NODULE_CLOSING_MM = 5.0
# Standard lung window used to map 8-bit display values back to approximate HU.
LUNG_WINDOW_WIDTH, LUNG_WINDOW_LEVEL = 1500.0, -600.0


# ----------------------------------------------------------------------------------------------------------
# lungs
# ----------------------------------------------------------------------------------------------------------
def classical_lungs(volume: Volume) -> np.ndarray:
    """Lung labels (uint8, 1 right / 2 left) of a CT in HU or of a 2D display slice, same shape as the input."""
    if volume.is_2d or volume.shape[0] == 1 and volume.intensity == "display":
        return _lungs_2d(volume)
    view = CanonicalView(volume)
    hu = view.forward(volume.array)
    factors = tuple(max(1, int(round(WORKING_SPACING_MM / s))) for s in view.spacing_zyx)
    low_hu = _block_mean(hu, factors)
    low_spacing = tuple(s * f for s, f in zip(view.spacing_zyx, factors))
    # geometry of the working grid in canonical order, for sizes in mL and mm
    low_volume = Volume(np.zeros(low_hu.shape, np.uint8), spacing=low_spacing[::-1])
    # the canonical working grid has an identity direction, so sides decided on it are patient sides
    low_labels, airway = _lungs_low_resolution(low_hu, low_volume)
    labels = _to_full_resolution(low_labels, airway, hu, factors)
    return np.ascontiguousarray(view.backward(labels))


def _block_mean(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean over factor-sized blocks (edge blocks padded by repetition)."""
    if factors == (1, 1, 1):
        return np.asarray(array, np.float32)
    pad = [(0, (-n) % f) for n, f in zip(array.shape, factors)]
    padded = np.pad(array, pad, mode="edge") if any(p for _, p in pad) else array
    shape = []
    for n, f in zip(padded.shape, factors):
        shape += [n // f, f]
    return padded.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def _lungs_low_resolution(hu: np.ndarray, grid: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-6 on the canonical working grid (axes: inferior->superior, anterior->posterior, right->left).

    Returns the lung labels and the removed airway region (trachea, main bronchi, plus a safety margin).
    """
    spacing = grid.spacing[::-1]
    air = hu < AIR_THRESHOLD_HU
    inside = air & fill_holes(~air, axis=0)  # air enclosed by the body in its axial slice
    airway = _airway_tree(hu, inside, spacing)
    if airway is None:
        airway = np.zeros(hu.shape, bool)
    else:
        airway = ndimage.binary_dilation(airway, _ball(1.5 * max(spacing[1:]), spacing))
        inside &= ~airway
    lungs = select_lung_components(inside, grid)
    lungs = fill_holes(fill_holes(lungs, axis=0))
    body_centre_x = _body_centre_x(hu, grid)
    labels = split_left_right(lungs, grid, body_centre_x=body_centre_x)
    labels = _close_each_lung(labels, spacing)
    return labels, airway & (labels == 0)


def _body_centre_x(hu: np.ndarray, grid: Volume) -> float:
    body = hu > AIR_THRESHOLD_HU
    columns = np.nonzero(body.any(axis=(0, 1)))[0]
    centre = (columns[0] + columns[-1]) / 2 if columns.size else hu.shape[2] / 2
    return float(centre * grid.spacing[0])


def _close_each_lung(labels: np.ndarray, spacing) -> np.ndarray:
    """In-plane closing per lung; a voxel claimed by both lungs stays with its original owner."""
    structure = _ball(NODULE_CLOSING_MM, spacing, planar_axis=0)
    pad = [(s // 2, s // 2) for s in structure.shape]
    crop = tuple(slice(p, n + p) for (p, _), n in zip(pad, labels.shape))
    out = labels.copy()
    for value in (1, 2):
        closed = ndimage.binary_closing(np.pad(labels == value, pad), structure)[crop]
        out[closed & (out == 0)] = value
    filled = fill_holes(out > 0, axis=0)
    return np.where(filled & (out == 0), _nearest_label(out), out).astype(np.uint8)


def _nearest_label(labels: np.ndarray) -> np.ndarray:
    index = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    return labels[tuple(index)]


def _find_trachea_seed(inside: np.ndarray, spacing) -> tuple[int, int, int] | None:
    """A small, round, midline air region in the upper slices, searched from the top down."""
    nz = inside.shape[0]
    pixel_mm2 = spacing[1] * spacing[2]
    for z in range(nz - 1, int(nz * 0.5), -1):
        parts, count = ndimage.label(inside[z])
        if count == 0:
            continue
        objects = ndimage.find_objects(parts)
        sizes = np.bincount(parts.ravel())[1:] * pixel_mm2
        width_x = inside.shape[2]
        best, best_offset = None, np.inf
        for k, (sl, area) in enumerate(zip(objects, sizes)):
            if not 40.0 <= area <= 900.0:
                continue
            extent_y = (sl[0].stop - sl[0].start) * spacing[1]
            extent_x = (sl[1].stop - sl[1].start) * spacing[2]
            if max(extent_y, extent_x) > 45.0:
                continue
            cy, cx = ndimage.center_of_mass(parts == k + 1)
            offset = abs(cx - width_x / 2) * spacing[2]
            if offset < best_offset:
                best, best_offset = (z, int(round(cy)), int(round(cx))), offset
        if best is not None and best_offset < 60.0 and parts[best[1], best[2]] > 0:
            return best
    return None


def _airway_tree(hu: np.ndarray, inside: np.ndarray, spacing) -> np.ndarray | None:
    """Trachea and large bronchi: region growing with the highest threshold that does not leak.

    Thresholds start just above the darkest tenth of the trachea's cross-section (lumen HU differs between
    scanners and with partial volume on the working grid) and rise in 10 HU steps. Growth stops before the
    grown volume exceeds ``AIRWAY_MAX_ML`` or jumps by 2.5x at once: both mean it entered the parenchyma.
    """
    seed = _find_trachea_seed(inside, spacing)
    if seed is None:
        return None
    parts, _ = ndimage.label(inside[seed[0]])
    lumen_hu = float(np.percentile(hu[seed[0]][parts == parts[seed[1:]]], 10))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    best, previous_ml = None, 0.0
    for threshold in np.arange(lumen_hu + AIRWAY_STEP_HU, AIRWAY_MAX_HU, AIRWAY_STEP_HU):
        candidate = (hu < threshold) & inside
        if not candidate[seed]:
            continue
        parts, _ = ndimage.label(candidate)
        grown = parts == parts[seed]
        volume_ml = grown.sum() * voxel_ml
        if volume_ml > AIRWAY_MAX_ML or (previous_ml >= 10.0 and volume_ml > 2.5 * previous_ml):
            break
        best, previous_ml = grown, volume_ml
    return best


def _to_full_resolution(low_labels: np.ndarray, airway: np.ndarray, hu: np.ndarray, factors) -> np.ndarray:
    """Low-resolution interior plus full-resolution air in a one-voxel band around the low-res boundary.

    The band never enters the removed airway: the tracheal wall is thinner than a working voxel.
    """
    if factors == (1, 1, 1):
        return low_labels
    shape = hu.shape

    def up(array: np.ndarray) -> np.ndarray:
        out = array
        for axis, f in enumerate(factors):
            if f > 1:
                out = np.repeat(out, f, axis=axis)
        return out[: shape[0], : shape[1], : shape[2]]

    lung = low_labels > 0
    core = up(ndimage.binary_erosion(lung))
    band = up(ndimage.binary_dilation(lung) & ~airway) & ~core
    full = core
    full |= band & (hu < AIR_THRESHOLD_HU)
    full = fill_holes(full, axis=0)
    owner = up(_nearest_label(low_labels) if lung.any() else low_labels)
    return np.where(full, owner, 0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# 2D display slices
# ----------------------------------------------------------------------------------------------------------
def _lungs_2d(volume: Volume) -> np.ndarray:
    """Dark regions inside the body outline of one slice; the two largest are the lungs.

    Screenshots are often cropped so tightly that the lungs touch the image edge, so "inside the body" is
    the convex hull of the tissue (bright) pixels or enclosed by tissue, rather than "not touching the
    border": outside air in the corners lies outside that hull.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import convex_hull_image

    image = np.asarray(volume.array[0], np.float32)
    smooth = ndimage.gaussian_filter(image, 1.5)
    threshold = AIR_THRESHOLD_HU if volume.intensity == "hu" else threshold_otsu(smooth)
    dark = ndimage.binary_opening(smooth < threshold, iterations=2)
    tissue = ndimage.binary_opening(~dark, iterations=2)
    if not tissue.any():
        return np.zeros(volume.shape, np.uint8)
    hull = ndimage.binary_erosion(convex_hull_image(tissue), iterations=3)
    inside = dark & (hull | fill_holes(~dark[None], axis=0)[0])
    lungs = select_lung_components(inside[None], volume)
    lungs = fill_holes(lungs, axis=0)
    return split_left_right(lungs, volume)


# ----------------------------------------------------------------------------------------------------------
# infection
# ----------------------------------------------------------------------------------------------------------
def display_to_hu(array: np.ndarray) -> np.ndarray:
    """Approximate HU of 0-255 display values, assuming the standard lung window W1500 / L-600."""
    low = LUNG_WINDOW_LEVEL - LUNG_WINDOW_WIDTH / 2
    return np.asarray(array, np.float32) / 255.0 * LUNG_WINDOW_WIDTH + low


def classical_infection(
    volume: Volume,
    lungs: np.ndarray,
    ggo_hu: tuple[float, float] = (-750.0, -300.0),
    consolidation_hu: tuple[float, float] = (-100.0, 60.0),
    min_volume_ml: float = 0.5,
) -> np.ndarray:
    """Weak infection baseline (uint8: 1 GGO, 2 consolidation) from HU bands inside the lungs.

    After light smoothing (Gaussian, sigma 1 mm), voxels in the GGO band (default -750..-300 HU) and the
    consolidation band (-100..+60 HU) inside the lungs, minus a 2 mm rim at the lung boundary (partial volume
    with the chest wall). Vessels are suppressed: dense (> -300 HU, unsmoothed) structures that vanish under
    an opening of radius 3 mm are thin (vessels, fissures) and are removed together with a 2 mm band of
    GGO-like partial volume around them.
    Components smaller than ``min_volume_ml`` are dropped (in 2D: an equivalent pixel count at 1 mm pixels).
    For display input (0-255) values are mapped back to HU assuming the standard lung window W1500/L-600,
    which is only approximately what the screenshots used. This is a baseline, not a diagnostic tool:
    it does not separate infection from atelectasis, effusion, scars or motion artefacts.
    """
    lungs = np.asarray(lungs) > 0
    if lungs.shape != volume.shape:
        raise ValueError(f"lung mask shape {lungs.shape} differs from volume shape {volume.shape}")
    out = np.zeros(volume.shape, np.uint8)
    if not lungs.any():
        return out
    # work inside the lungs' bounding box (plus a margin for the filters): most of a CT is not lung
    box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in ndimage.find_objects(lungs.astype(np.uint8))[0])
    lungs = lungs[box]
    array = volume.array[box]
    hu = display_to_hu(array) if volume.intensity == "display" else np.asarray(array, np.float32)
    spacing = tuple(volume.spacing[::-1])
    planar = 0 if volume.is_2d else None
    sigma = [0.0 if (planar == 0 and a == 0) else 1.0 / s for a, s in enumerate(spacing)]
    smooth = ndimage.gaussian_filter(hu, sigma)
    region = lungs & ~ndimage.binary_dilation(~lungs, _ball(2.0, spacing, planar), border_value=0)
    # dense structures from unsmoothed values: smoothing would turn thin vessels into GGO-like values
    dense = (hu > ggo_hu[1]) & lungs
    thick = ndimage.binary_opening(dense, _ball(3.0, spacing, planar))
    vessels = dense & ~thick
    near_vessels = ndimage.binary_dilation(vessels, _ball(2.0, spacing, planar))
    ggo = region & (smooth >= ggo_hu[0]) & (smooth < ggo_hu[1]) & ~near_vessels
    consolidation = region & thick & (smooth >= consolidation_hu[0]) & (smooth <= consolidation_hu[1])
    out[box][ggo] = GGO
    out[box][consolidation] = CONSOLIDATION
    if volume.is_2d and volume.metadata.get("spacing_known", True) is False:
        unit = Volume(out, spacing=(1.0, 1.0, 1.0))
        min_ml = min_volume_ml * 0.05  # 25 px at 1 mm pixels for the default 0.5 mL
    else:
        unit, min_ml = volume, min_volume_ml
    return remove_small_components(out, unit, min_ml)
