"""Classical lung and infection segmentation: thresholds and morphology, no weights.

Lungs (3D, Hounsfield units)
    1. Work on a grid of about 2 mm (integer block means; returned labels are full resolution).
    2. Air = HU < -400. -400 is halfway between aerated lung (about -850) and soft tissue (about +40), so the
       boundary sits at 50 % partial volume, which gives unbiased lung volumes; padding outside the scan
       field of view (-2048, -3024) is "air" connected to the image edge and therefore outside the body.
    3. Air not connected to the slice edge (per axial slice) is inside the body: lungs, airways, bowel gas.
    4. The trachea is found in the upper slices (small round midline air), the airway tree is grown from it
       with an explosion-controlled threshold, and trachea + main bronchi are removed.
    5. Bowel and stomach gas is dropped: air that stays in front of the body's front-to-back middle (lungs
       reach the back of the chest), and gas (mostly air alone) centred under the lowest slice of the
       lung-density air (in an abdominal CT the bowel gas under the lung bases is the largest air region).
       Then the largest component and a second one at lung height are kept (bowel gas lies below the lungs).
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
from lungseg_core.labels import CONSOLIDATION, CONSOLIDATION_HU, GGO, GGO_HU
from lungseg_core.preprocessing.cropping import bounding_box
from lungseg_core.preprocessing.intensity import hu_from_display
from lungseg_core.preprocessing.orientation import CanonicalView
from lungseg_core.postprocessing.lungs import (
    MIN_LUNG_ML,
    MIN_SECOND_LUNG_FRACTION,
    _ball,
    fill_holes,
    select_lung_components,
    split_left_right,
)

AIR_THRESHOLD_HU = -400.0
WORKING_SPACING_MM = 2.0
# Explosion-controlled airway growing: thresholds tried in turn; growth stops before the volume explodes.
AIRWAY_STEP_HU, AIRWAY_MAX_HU = 10.0, -750.0
AIRWAY_MAX_ML = 250.0
NODULE_CLOSING_MM = 5.0
# Aerated lung mixes air with tissue and blood: about -850 HU on the working grid, with under 5 % of it below
# -950 HU on the CTs here. Bowel and stomach gas is air alone: more than half of it below -950 HU.
GAS_HU = -950.0
GAS_FRACTION = 0.5


# ----------------------------------------------------------------------------------------------------------
# lungs
# ----------------------------------------------------------------------------------------------------------
def classical_lungs(volume: Volume) -> np.ndarray:
    """Lung labels (uint8, 1 right / 2 left) of a CT in HU or of a 2D display slice, same shape as the input."""
    volume = _in_hu(volume)
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
    """Mean (float32) over factor-sized blocks (edge blocks padded by repetition)."""
    if factors == (1, 1, 1):
        return np.asarray(array, np.float32)
    pad = [(0, (-n) % f) for n, f in zip(array.shape, factors)]
    padded = np.pad(array, pad, mode="edge") if any(p for _, p in pad) else array
    shape = []
    for n, f in zip(padded.shape, factors):
        shape += [n // f, f]
    cells = int(np.prod(factors))
    if padded.dtype.kind in "biu" and padded.itemsize <= 2 and 2**16 * cells < 2**24:
        # Integer CTs (and masks): integer block sums are several times faster than numpy's float32 mean,
        # and give exactly its numbers: every partial sum is an integer below 2**24, so the float32
        # summation was exact too, and one correctly rounded division gives the same float32.
        return _block_sums(padded, factors).astype(np.float32) / np.float32(cells)
    return padded.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def _block_sums(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """int32 sums over factor-sized blocks (shape divisible by ``factors``), one axis at a time with
    strided adds: contiguous runs instead of a strided 6-D reduction."""
    out = array
    for axis, factor in enumerate(factors):
        if factor == 1:
            continue
        index = [slice(None)] * out.ndim
        index[axis] = slice(0, None, factor)
        total = out[tuple(index)].astype(np.int32)
        for offset in range(1, factor):
            index[axis] = slice(offset, None, factor)
            total += out[tuple(index)]
        out = total
    return out.astype(np.int32, copy=False)


def _lungs_low_resolution(hu: np.ndarray, grid: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-6 on the canonical working grid (axes: inferior->superior, anterior->posterior, right->left).

    Returns the lung labels and the removed airway region (trachea, main bronchi, plus a safety margin).
    """
    spacing = grid.spacing[::-1]
    air = hu < AIR_THRESHOLD_HU
    body = fill_holes(~air, axis=0)
    inside = air & body  # air enclosed by the body in its axial slice
    airway = _airway_tree(hu, inside, spacing)
    if airway is None:
        airway = np.zeros(hu.shape, bool)
    else:
        airway = ndimage.binary_dilation(airway, _ball(1.5 * max(spacing[1:]), spacing))
        inside &= ~airway
    inside = _without_bowel_gas(inside, hu, body, grid.voxel_volume_ml)
    lungs = select_lung_components(inside, grid)
    lungs = fill_holes(fill_holes(lungs, axis=0))
    body_centre_x = _body_centre_x(hu, grid)
    labels = split_left_right(lungs, grid, body_centre_x=body_centre_x)
    labels = _close_each_lung(labels, spacing)
    return labels, airway & (labels == 0)


def _without_bowel_gas(inside: np.ndarray, hu: np.ndarray, body: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Drop enclosed air that is bowel or stomach gas, not lung. Canonical arrays: axis 0 runs foot to head,
    axis 1 front to back.

    - Air that stays in front of the body's front-to-back middle. The lungs always reach the back of the chest
      beside the spine, while the gas of a supine patient rises to the front; in an upper-abdomen scan without
      lungs that gas would otherwise be the "lungs".
    - Gas (mostly below ``GAS_HU``) centred below the lowest slice of the largest lung-density air region: the
      bowel gas under the lung bases of an abdominal CT, the largest air region there. The lung-density region
      must hold ``MIN_SECOND_LUNG_FRACTION`` of a gas region to drop it, so a small lung-density pocket never
      costs a patient with severe emphysema (lungs as dark as gas) the lungs.
    """
    if not inside.any():
        return inside
    box = bounding_box(inside)
    labels, count = ndimage.label(inside[box])
    index = np.arange(1, count + 1)
    extents = ndimage.find_objects(labels)
    rearmost_row = box[1].start + np.array([extent[1].stop - 1 for extent in extents])
    drop = rearmost_row <= _body_middle_row(body)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    is_gas = np.asarray(ndimage.mean(hu[box] < GAS_HU, labels, index)) > GAS_FRACTION
    lung_density = ~is_gas & ~drop & (sizes * voxel_ml >= MIN_LUNG_ML)
    if lung_density.any() and is_gas.any():
        reference = index[lung_density][np.argmax(sizes[lung_density])]
        bottom = extents[reference - 1][0].start
        centre_z = np.array([c[0] for c in ndimage.center_of_mass(inside[box], labels, index)])
        drop |= is_gas & (centre_z < bottom) & (sizes[reference - 1] >= MIN_SECOND_LUNG_FRACTION * sizes)
    if not drop.any():
        return inside
    out = inside.copy()
    out[box] &= ~np.isin(labels, index[drop])
    return out


def _body_middle_row(body: np.ndarray) -> float:
    """The front-to-back middle of the body (its largest part: not the table), as a canonical axis-1 row."""
    labels, count = ndimage.label(body)
    if count == 0:
        return -1.0
    return _extent_middle(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1, axis=1)


def _body_centre_x(hu: np.ndarray, grid: Volume) -> float:
    centre = _extent_middle(hu > AIR_THRESHOLD_HU, axis=2)
    return float((hu.shape[2] / 2 if centre is None else centre) * grid.spacing[0])


def _extent_middle(mask: np.ndarray, axis: int) -> float | None:
    """The index halfway between the first and the last of ``mask``'s slabs along ``axis``; None if empty."""
    slabs = np.nonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
    return (slabs[0] + slabs[-1]) / 2 if slabs.size else None


def _close_each_lung(labels: np.ndarray, spacing) -> np.ndarray:
    """In-plane closing per lung; a voxel claimed by both lungs stays with its original owner.

    Neither the closing nor the hole filling reaches outside the lungs' bounding box: the work stays in it.
    """
    out = labels.copy()
    if out.any():
        box = bounding_box(labels > 0)
        out[box] = _close_each_lung_in_box(labels[box], spacing)
    return out


def _close_each_lung_in_box(labels: np.ndarray, spacing) -> np.ndarray:
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
    lung = low_labels > 0
    out = np.zeros(hu.shape, np.uint8)
    if not lung.any():
        return out
    # Only the box of the lungs grown by two cells can be labelled (the band reaches one cell out), and the
    # second cell keeps a background margin for the hole filling: the full-resolution work stays in there.
    low_box = bounding_box(lung, 2)
    box = tuple(slice(b.start * f, min(b.stop * f, n)) for b, f, n in zip(low_box, factors, hu.shape))
    box_shape = tuple(b.stop - b.start for b in box)

    def up(array: np.ndarray) -> np.ndarray:
        return _upsample(array, factors, box_shape)

    core = up(ndimage.binary_erosion(lung)[low_box])
    band = up((ndimage.binary_dilation(lung) & ~airway)[low_box]) & ~core
    full = core
    full |= band & (hu[box] < AIR_THRESHOLD_HU)
    full = fill_holes(full, axis=0)
    out[box] = np.where(full, up(_nearest_label(low_labels[low_box])), 0)
    return out


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
# Working grid for the infection filters: about 1.5 mm in-plane and 2.5 mm along z (block means; thicker
# slices are kept). Lesions are centimetres wide, so this loses nothing and keeps 512x512x300 CTs fast.
INFECTION_SPACING_MM = (2.5, 1.5, 1.5)
# Grey opening radius: brighter structures narrower than about twice this (vessels up to ~13 mm,
# fissures, bronchial walls, the partial-volume halo around them and along the pleura) are replaced by the
# surrounding parenchyma's density; a lesion patch that holds a ball of this radius keeps its density.
OPENING_RADIUS_MM = 6.5
# In-plane margin at the lung boundary where partial volume with chest wall, mediastinum and diaphragm
# mimics GGO; along z the slices directly above / below a non-lung voxel are also in the margin (with thick
# slices the diaphragm dome and apices are averaged into the next slice).
BOUNDARY_MARGIN_MM = 4.0
# Normal aerated lung is about -850 HU; a GGO patch must be at least this much denser than the patient's own
# aerated-lung level (median, or 10th percentile + 60 HU when much of the lung is affected), so a CT in
# expiration or with dependent density does not become GGO everywhere.
GGO_MIN_RISE_HU = 150.0
# A patch is reported only when its mean (on the opened image) is this far inside the band: a
# patch whose mean sits right at the lower threshold is a density gradient, not an opacity.
GGO_MEAN_MARGIN_HU = 50.0
# Working-grid cells a patch may grow back at its edge (see _infection_low_resolution).
EDGE_CELLS = 2
# Pixel size assumed for 2D screenshots without spacing: the lung pair spans about 250 mm.
CHEST_WIDTH_MM = 250.0
# Screenshots use many different windows, so after the W1500/L-600 mapping their values are shifted so the
# lungs' 10th percentile (aerated lung, even in badly affected slices) sits at this HU.
DISPLAY_AERATED_HU = -900.0
# Screenshots are smoothed, contrast-compressed and windowed differently, and COVID-19 opacities are often
# patchy (crazy paving): a smaller opening and a lower rise fit them better. Chosen on the 50 MedSeg slices
# of the COVID-SemiSeg training split (the only 2D data with expert masks here), so optimistic on them.
DISPLAY_OPENING_RADIUS_MM = 2.5
DISPLAY_GGO_MIN_RISE_HU = 100.0


# Approximate HU of 0-255 display values (standard lung window W1500 / L-600): the preprocessing mapping.
display_to_hu = hu_from_display


def _in_hu(volume: Volume) -> Volume:
    """8-bit lung-window volumes thresholded in HU through the window; 2D slices keep their own display path."""
    if volume.intensity == "display" and not (volume.is_2d or volume.shape[0] == 1):
        return volume.with_array(hu_from_display(volume.array), intensity="hu")
    return volume


def classical_infection(
    volume: Volume,
    lungs: np.ndarray,
    ggo_hu: tuple[float, float] = GGO_HU,
    consolidation_hu: tuple[float, float] = CONSOLIDATION_HU,
    min_volume_ml: float = 1.0,
) -> np.ndarray:
    """Infection baseline (uint8: 1 GGO, 2 consolidation, only inside ``lungs``) from density patches.

    1. Work on a ~1.5 x 1.5 x 2.5 mm grid (block means: also the noise filter) inside the lungs' box.
    2. Grey opening (min then max over a ball of radius ``OPENING_RADIUS_MM``, in-plane only when slices
       are thicker than that) of the lung density with everything outside the lungs set to air: vessels,
       fissures, airway walls, their partial-volume halo and the partial-volume rim at the pleura are
       thinner than the ball and vanish; a patch that holds the ball keeps its density, up to the pleura.
    3. GGO seeds: opened density in ``ggo_hu`` and at least ``GGO_MIN_RISE_HU`` above the aerated-lung
       median, away from the lung boundary (``BOUNDARY_MARGIN_MM`` in-plane, one slice along z).
       Consolidation seeds: opened density >= ``consolidation_hu[0]``.
    4. Patches: each connected region of the band needs ``min_volume_ml`` of seeds and a mean inside the
       band (so it reaches into the boundary margin only from a real patch); its edge then grows back by
       ``EDGE_CELLS`` cells where the block-mean density still qualifies.
    5. Back on the full grid, a voxel is labelled when its low-resolution cell is (vessels inside a GGO patch
       are part of the opacity, as a reader would outline it).

    Display input (0-255) is mapped back to HU assuming the standard lung window W1500/L-600, which is only
    approximately what screenshots used; without spacing, pixels are scaled so the lungs span about 250 mm.
    This is a baseline, not a diagnostic tool: it does not separate infection from atelectasis, effusion,
    scars, dependent density in expiration or motion artefacts, and vessels thicker than ~13 mm (hilum)
    can read as consolidation. Healthy CTChest4 (10 mm slices): ~25 mL with classical lungs, ~43 mL (all
    GGO) with the default lungs, whose additions at the chest wall are dense tissue by design; see
    benchmarks/bench_infection.py (--model threshold) for all measurements.
    """
    volume = _in_hu(volume)
    lungs = np.asarray(lungs) > 0
    if lungs.shape != volume.shape:
        raise ValueError(f"lung mask shape {lungs.shape} differs from volume shape {volume.shape}")
    out = np.zeros(volume.shape, np.uint8)
    if not lungs.any():
        return out
    # work inside the lungs' bounding box: most of a CT is not lung
    box = bounding_box(lungs)
    lungs_box = lungs[box]
    array = volume.array[box]
    if volume.intensity == "display":
        hu = display_to_hu(array)
        hu += DISPLAY_AERATED_HU - np.percentile(hu[lungs_box], 10)
        lung_hu = np.where(lungs_box, hu, -1000.0)
    elif array.dtype == np.int16:  # the usual CT: stay in int16 (same numbers, no float32 copy of the box)
        lung_hu = np.where(lungs_box, array, np.int16(-1000))
    else:
        lung_hu = np.where(lungs_box, np.asarray(array, np.float32), -1000.0)
    spacing = _infection_spacing(volume, lungs)
    factors = tuple(max(1, int(round(t / s))) for t, s in zip(INFECTION_SPACING_MM, spacing))
    if volume.is_2d or volume.shape[0] == 1:
        factors = (1,) + factors[1:]
    low_spacing = tuple(s * f for s, f in zip(spacing, factors))
    low_lungs = _block_mean(lungs_box, factors) >= 0.5
    low_hu = _block_mean(lung_hu, factors)
    del lung_hu
    display = volume.intensity == "display"
    low_labels = _infection_low_resolution(
        low_hu, low_lungs, low_spacing, ggo_hu, consolidation_hu, min_volume_ml,
        opening_mm=DISPLAY_OPENING_RADIUS_MM if display else OPENING_RADIUS_MM,
        min_rise_hu=DISPLAY_GGO_MIN_RISE_HU if display else GGO_MIN_RISE_HU,
    )
    out[box] = np.where(lungs_box, _upsample(low_labels, factors, lungs_box.shape), 0)
    return out


def _infection_spacing(volume: Volume, lungs: np.ndarray) -> tuple[float, float, float]:
    """(z, y, x) spacing in mm; for screenshots without spacing, estimated from the lungs' extent."""
    spacing = tuple(float(s) for s in volume.spacing[::-1])
    if not volume.spacing_known:
        rows, cols = np.nonzero(lungs[0])
        extent_px = max(np.ptp(rows), np.ptp(cols)) + 1
        pixel_mm = float(np.clip(CHEST_WIDTH_MM / extent_px, 0.4, 2.0))
        spacing = (1.0, pixel_mm, pixel_mm)
    return spacing


def _infection_low_resolution(
    hu, lungs, spacing, ggo_hu, consolidation_hu, min_volume_ml, opening_mm: float, min_rise_hu: float
) -> np.ndarray:
    """Steps 2-4 on the working grid; returns labels 0/1/2 on that grid."""
    labels = np.zeros(hu.shape, np.uint8)
    if not lungs.any():
        return labels
    # a ball (not a cube: its corners would cut round lesions); radius at least one cell in-plane
    radius = max(opening_mm, 1.01 * max(spacing[1:]))
    ball = _ball(radius, spacing, planar_axis=0 if spacing[0] > radius else None)
    # outside the lungs counts as air: the chest wall must not lend its density to the rim of the lung
    opened = _grey_opening(np.where(lungs, hu, -1000.0), ball)
    opened = np.where(lungs, opened, -1000.0)
    interior = _lung_interior(lungs, spacing)
    values = hu[interior] if interior.any() else hu[lungs]
    # the median is the aerated lung unless much of the lung is affected; then the 10th percentile (+60 HU,
    # its usual distance to the median in healthy lungs) is
    aerated = min(float(np.median(values)), float(np.percentile(values, 10)) + 60.0)
    ggo_low = max(ggo_hu[0], aerated + min_rise_hu)
    in_ggo = lungs & (opened >= ggo_low) & (opened < ggo_hu[1])
    in_consolidation = lungs & (opened >= consolidation_hu[0])
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if hu.shape[0] == 1:
        # one slice: compare areas, as the cross-section of a sphere of min_volume_ml (1 mL -> 1.2 cm2)
        radius_mm = (3.0 * min_volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
        voxel_ml, min_volume_ml = spacing[1] * spacing[2], np.pi * radius_mm**2
    ggo = _patches(in_ggo & interior, in_ggo, opened, ggo_low + GGO_MEAN_MARGIN_HU, voxel_ml, min_volume_ml)
    consolidation = _patches(
        in_consolidation & interior, in_consolidation, opened, consolidation_hu[0], voxel_ml, min_volume_ml
    )
    # the opening rounds a patch's corners, the min filter's noise bias and block partial volume trim its
    # edge: take back neighbouring cells whose own (block-mean) density qualifies, up to ~3 mm out
    structure = np.ones((3,) * hu.ndim, bool) if spacing[0] <= 3.0 else np.ones((1, 3, 3), bool)
    edge_ok = lungs & (hu >= ggo_low) & (hu < ggo_hu[1])
    ggo = ndimage.binary_dilation(ggo, structure, iterations=EDGE_CELLS, mask=edge_ok) | ggo
    # consolidation edges: cells at least half-way (partial volume) from aerated lung to the band
    edge_ok = lungs & (hu >= (aerated + consolidation_hu[0]) / 2)
    consolidation = ndimage.binary_dilation(consolidation, structure, iterations=EDGE_CELLS, mask=edge_ok)
    labels[ggo] = GGO
    labels[consolidation] = CONSOLIDATION
    return labels


def _grey_opening(image: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """``ndimage.grey_opening(image, footprint=footprint)`` for a symmetric convex footprint (a ball), faster.

    The ball is a stack of x-rows ``[-w, w]``: a min (max) over it is the min (max) over its rows of a 1D
    running min (max) of width ``2w + 1`` shifted by the row's (z, y) offset. That is the same set of values
    as scipy's footprint filter (same 'reflect' border), so the result is identical, at a few operations per
    voxel instead of one per footprint voxel.
    """
    half = [n // 2 for n in footprint.shape]
    rows = _footprint_rows(footprint)
    if rows is None or any(h > n for h, n in zip(half, image.shape)):
        return ndimage.grey_opening(image, footprint=footprint)
    eroded = _ball_filter(image, rows, half, np.minimum, ndimage.minimum_filter1d)
    return _ball_filter(eroded, rows, half, np.maximum, ndimage.maximum_filter1d)


def _footprint_rows(footprint: np.ndarray) -> list[tuple[int, int, int]] | None:
    """(dz, dy, w) of every x-row of a centred footprint, or None when a row is not one centred run."""
    half_x = footprint.shape[2] // 2
    rows = []
    for (z, y), row in np.ndenumerate(footprint.any(axis=2)):
        if not row:
            continue
        present = np.flatnonzero(footprint[z, y]) - half_x
        w = int(present.max())
        if present.min() != -w or present.size != 2 * w + 1:
            return None
        rows.append((z - footprint.shape[0] // 2, y - footprint.shape[1] // 2, w))
    return rows


def _ball_filter(image, rows, half, combine, running_filter) -> np.ndarray:
    hz, hy, hx = half
    padded = np.pad(image, [(hz, hz), (hy, hy), (hx, hx)], mode="symmetric")  # = scipy's 'reflect'
    runs = {w: running_filter(padded, 2 * w + 1, axis=2) for w in {w for _, _, w in rows}}
    nz, ny, nx = image.shape
    out = None
    for dz, dy, w in rows:
        part = runs[w][hz + dz: hz + dz + nz, hy + dy: hy + dy + ny, hx: hx + nx]
        out = part.copy() if out is None else combine(out, part, out=out)
    return out


def _lung_interior(lungs: np.ndarray, spacing) -> np.ndarray:
    """Lungs minus the in-plane boundary margin and minus slices next to a non-lung voxel along z."""
    half = [max(1, int(round(BOUNDARY_MARGIN_MM / s))) for s in spacing[1:]]
    planar = np.ones((1, 2 * half[0] + 1, 2 * half[1] + 1), bool)
    interior = ndimage.binary_erosion(lungs, planar, border_value=0)
    if lungs.shape[0] > 1:
        interior &= ndimage.binary_erosion(lungs, np.ones((3, 1, 1), bool), border_value=1)
    return interior


def _patches(seeds, allowed, opened, min_mean_hu, voxel_ml, min_volume_ml) -> np.ndarray:
    """Connected ``allowed`` regions grown from ``seeds`` with enough seed volume and a high enough mean."""
    parts, count = ndimage.label(allowed, np.ones((3,) * allowed.ndim, bool))
    if count == 0:
        return np.zeros(allowed.shape, bool)
    index = np.arange(1, count + 1)
    seed_ml = np.bincount(parts[seeds], minlength=count + 1)[1:] * voxel_ml
    means = np.asarray(ndimage.mean(opened, parts, index))
    keep = np.concatenate([[False], (seed_ml >= min_volume_ml) & (means >= min_mean_hu)])
    return keep[parts]


def _upsample(low: np.ndarray, factors, shape) -> np.ndarray:
    """Each low-resolution cell repeated over its factor-sized block, cut to ``shape`` (one copy)."""
    (nz, ny, nx), (fz, fy, fx) = low.shape, factors
    blocks = np.broadcast_to(low[:, None, :, None, :, None], (nz, fz, ny, fy, nx, fx))
    return blocks.reshape(nz * fz, ny * fy, nx * fx)[: shape[0], : shape[1], : shape[2]]
