"""The 2.5D slice contract shared by training and inference: volume -> network input -> back to the volume.

``prepare_slices`` turns a CT (HU or 8-bit display) into float32 ``(Z, 2*context+1, size, size)``:

0. slices are cut along the head-foot axis of the canonical view (:class:`CanonicalView`), so a CT stored
   coronally, sagittally, transposed or flipped gives the same axial slices as one stored in LPS order;
1. values to [0, 1] through the lung window (padding outside the field of view shown as air);
2. in-plane crop to the body's bounding box (one box for all slices, so neighbours stay aligned);
3. the crop padded to a square (aspect ratio kept) and optionally enhanced (CLAHE / histogram equalisation);
4. resized to ``size x size`` (antialiased linear when shrinking, linear when enlarging);
5. each slice stacked with its ``context`` neighbours on each side (edge slices repeat the border slice).

``SliceLayout`` records the axis order, crop, padding and size so ``prepare_labels`` applies the same geometry
to a labelmap (nearest neighbour) and ``restore_probabilities`` maps network output back onto the original grid.
Resizing uses explicit sparse interpolation matrices (``A @ slice @ A.T``): fast, deterministic, identical
in training and inference, and exactly the identity when the square side already equals ``size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import sparse

from lungseg_core.io.volume import Volume
from lungseg_core.preprocessing.cropping import body_component, bounding_box, margin_mm_to_vox
from lungseg_core.preprocessing.enhance import ENHANCE_METHODS, enhance_slice
from lungseg_core.preprocessing.intensity import LUNG_WINDOW, check_intensity, to_unit_range
from lungseg_core.preprocessing.orientation import CanonicalView, axial_view

AIR_HU = -1000.0
PADDING_BELOW_HU = -1500.0  # -2048 / -3024 field-of-view padding: shown as air, not as a darker-than-air ring
BODY_MARGIN_MM = 5.0


@dataclass(frozen=True)
class SliceSpec:
    """How volumes become network input; stored with a model so inference repeats training exactly."""

    size: int = 256  # in-plane size fed to the network (square)
    context: int = 1  # neighbours each side: in_channels = 2*context + 1 (2.5D)
    window: tuple[float, float] = LUNG_WINDOW
    enhance: str = "none"  # "none" | "clahe" | "histeq"
    crop_to_body: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        if int(self.size) < 8:
            raise ValueError(f"SliceSpec.size must be >= 8, got {self.size}")
        if int(self.context) < 0:
            raise ValueError(f"SliceSpec.context must be >= 0, got {self.context}")
        if len(self.window) != 2 or self.window[1] <= self.window[0]:
            raise ValueError(f"SliceSpec.window must be (low, high) with high > low, got {self.window}")
        if self.enhance not in ENHANCE_METHODS:
            raise ValueError(f"SliceSpec.enhance must be one of {ENHANCE_METHODS}, got {self.enhance!r}")

    @property
    def in_channels(self) -> int:
        return 2 * self.context + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SliceSpec":
        known = {k: d[k] for k in ("size", "context", "window", "enhance", "crop_to_body") if k in d}
        return cls(**known)


@dataclass
class SliceLayout:
    """How ``prepare_slices`` mapped the original grid; enough to undo it.

    The volume, viewed canonically (``axes`` and ``flips`` of :class:`CanonicalView`; ``shape`` (Z, Y, X) is
    the canonical shape, ``stored_shape`` the input's), was cut into axial slices; each was cropped to rows
    ``box[0]:box[1]`` and columns ``box[2]:box[3]``, placed at ``offset`` (row, column) inside a ``side x side`` square, and the square
    resized to ``size x size``.
    """

    shape: tuple[int, int, int]
    box: tuple[int, int, int, int]  # y0, y1, x0, x1
    side: int
    offset: tuple[int, int]
    size: int
    kind: str = "hu"
    spec: dict = field(default_factory=dict)
    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)

    @property
    def view(self) -> CanonicalView:
        return CanonicalView.of_axes(self.axes, self.flips)

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        return self.view.stored_shape(self.shape)

    @property
    def crop(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.box
        return slice(y0, y1), slice(x0, x1)

    @property
    def crop_shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.box
        return y1 - y0, x1 - x0

    @property
    def in_square(self) -> tuple[slice, slice]:
        """Where the crop sits inside the padded square."""
        height, width = self.crop_shape
        return slice(self.offset[0], self.offset[0] + height), slice(self.offset[1], self.offset[1] + width)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(shape=list(self.shape), box=list(self.box), offset=list(self.offset), axes=list(self.axes),
                 flips=list(self.flips))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SliceLayout":
        return cls(tuple(d["shape"]), tuple(d["box"]), int(d["side"]), tuple(d["offset"]), int(d["size"]),
                   d.get("kind", "hu"), dict(d.get("spec", {})), tuple(d.get("axes", (0, 1, 2))),
                   tuple(d.get("flips", (False, False, False))))


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights; a triangle filter widened when shrinking (antialias).

    Pixel centres are aligned as in PIL / torch ``align_corners=False``; equal sizes give the identity.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    weights = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / support)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)


def _sparse(matrix: np.ndarray) -> sparse.csr_matrix:
    return sparse.csr_matrix(matrix)


def resize_2d(images: np.ndarray, rows: sparse.csr_matrix, cols: sparse.csr_matrix) -> np.ndarray:
    """``rows @ image @ cols.T`` for every image of a (..., h, w) stack -> (..., H, W) float32."""
    images = np.asarray(images, dtype=np.float32)
    lead, (height, width) = images.shape[:-2], images.shape[-2:]
    flat = images.reshape(-1, width)  # (L*h, w)
    wide = np.asarray(cols @ flat.T).T.reshape(-1, height, cols.shape[0])  # (L, h, W)
    tall = np.asarray(rows @ wide.transpose(1, 0, 2).reshape(height, -1))  # (H, L*W)
    out = tall.reshape(rows.shape[0], -1, cols.shape[0]).transpose(1, 0, 2)
    return np.ascontiguousarray(out.reshape(lead + out.shape[1:]), dtype=np.float32)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for nearest-neighbour resizing (same centre alignment)."""
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(int), n_in - 1)


def _body_box(volume: Volume, kind: str) -> tuple[int, int, int, int]:
    """In-plane (y0, y1, x0, x1) of the body over all slices; the whole slice when no body is found.

    Searched on an in-plane subsampled grid (at most ~256 px) so the component labelling of a 512 x 512
    x 500 CT costs a quarter of the memory; the box is then widened by the subsampling step.
    """
    _, ny, nx = volume.shape
    step = max(1, min(ny, nx) // 256)
    probe = Volume(volume.array[:, ::step, ::step], intensity=kind)
    _, my, mx = margin_mm_to_vox(volume, BODY_MARGIN_MM)
    try:
        _, rows, cols = bounding_box(body_component(probe))
    except ValueError:
        return 0, ny, 0, nx
    return (
        max(0, rows.start * step - my), min(ny, rows.stop * step + my),
        max(0, cols.start * step - mx), min(nx, cols.stop * step + mx),
    )


def make_layout(volume: Volume, spec: SliceSpec, kind: str) -> SliceLayout:
    """The axis order and crop/pad/resize geometry ``prepare_slices`` will use for ``volume``."""
    view = axial_view(volume)
    canonical = view.volume(volume)
    _, ny, nx = canonical.shape
    box = _body_box(canonical, kind) if spec.crop_to_body else (0, ny, 0, nx)
    height, width = box[1] - box[0], box[3] - box[2]
    side = max(height, width)
    offset = ((side - height) // 2, (side - width) // 2)
    return SliceLayout(tuple(canonical.shape), tuple(int(b) for b in box), side, offset, spec.size, kind,
                       spec.to_dict(), view.perm, view.flips)


def _unit_slice(raw: np.ndarray, kind: str, window: tuple[float, float]) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float32)
    if kind == "hu":
        raw = np.where(raw < PADDING_BELOW_HU, np.float32(AIR_HU), raw)
    return to_unit_range(raw, kind, window)


def _air_value(kind: str, window: tuple[float, float]) -> float:
    return float(to_unit_range(np.array([AIR_HU]), "hu", window)[0]) if kind == "hu" else 0.0


def stack_context(center: np.ndarray, context: int) -> np.ndarray:
    """(Z, size, size) -> (Z, 2*context+1, size, size), channel ``context`` = the slice itself.

    Edge slices repeat the border slice (no invented data beyond the scan).
    """
    out = np.empty((center.shape[0], 2 * context + 1) + center.shape[1:], dtype=np.float32)
    out[:, context] = center
    fill_context(out, context)
    return out


def fill_context(stack: np.ndarray, context: int) -> None:
    """In place: fill the neighbour channels of (Z, 2*context+1, ...) from the centre channel ``context``."""
    depth = stack.shape[0]
    for channel, shift in enumerate(range(-context, context + 1)):
        if shift:  # the centre channel is the source and is never overwritten
            stack[:, channel] = stack[np.clip(np.arange(depth) + shift, 0, depth - 1), context]


def prepare_slices(volume: Volume, spec: SliceSpec, kind: str | None = None) -> tuple[np.ndarray, SliceLayout]:
    """Network input float32 (Z, spec.in_channels, size, size) in [0, 1] and the layout to undo it.

    ``kind`` ("hu" / "display") skips detection when the caller already knows it; otherwise
    :func:`check_intensity` decides (and raises InputError for unusable intensities).
    Works for 2D volumes (Z = 1). Peak memory: the output, a few slices, and the body search on a
    subsampled grid (about Z x 256 x 256 labels).
    """
    kind = kind or check_intensity(volume)
    layout = make_layout(volume, spec, kind)
    canonical = layout.view.forward(volume.array)
    rows, cols = layout.crop
    in_rows, in_cols = layout.in_square
    resize = _sparse(resize_matrix(layout.side, spec.size))
    air = _air_value(kind, spec.window)
    depth = canonical.shape[0]
    out = np.empty((depth, spec.in_channels, spec.size, spec.size), dtype=np.float32)
    square = np.empty((layout.side, layout.side), dtype=np.float32)
    for z in range(depth):
        square.fill(air)
        square[in_rows, in_cols] = _unit_slice(canonical[z, rows, cols], kind, spec.window)
        enhanced = enhance_slice(square, spec.enhance)
        out[z, spec.context] = resize_2d(enhanced, resize, resize)
    fill_context(out, spec.context)
    np.clip(out, 0.0, 1.0, out=out)
    return out, layout


def prepare_labels(labels: np.ndarray, layout: SliceLayout) -> np.ndarray:
    """A (Z, Y, X) labelmap on the original grid -> (Z, size, size) with the same axis order and
    crop/pad/resize (nearest)."""
    labels = np.asarray(labels)
    if labels.shape != layout.stored_shape:
        raise ValueError(f"labels shape {labels.shape} differs from the prepared volume's {layout.stored_shape}")
    labels = layout.view.forward(labels)
    rows, cols = layout.crop
    in_rows, in_cols = layout.in_square
    square = np.zeros((labels.shape[0], layout.side, layout.side), dtype=labels.dtype)
    square[:, in_rows, in_cols] = labels[:, rows, cols]
    index = nearest_indices(layout.side, layout.size)
    return np.ascontiguousarray(square[:, index[:, None], index[None, :]])


def _restore_slice(probs_z: np.ndarray, back_rows: sparse.csr_matrix, back_cols: sparse.csr_matrix) -> np.ndarray:
    """(K, size, size) -> (K, crop_h, crop_w): resized to the square and cut back to the crop."""
    return resize_2d(probs_z, back_rows, back_cols)


def _back_matrices(layout: SliceLayout) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    back = resize_matrix(layout.size, layout.side)
    in_rows, in_cols = layout.in_square
    return _sparse(back[in_rows]), _sparse(back[in_cols])


def _check_probs(probs: np.ndarray, layout: SliceLayout) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 4 or probs.shape[0] != layout.shape[0] or probs.shape[2:] != (layout.size, layout.size):
        raise ValueError(
            f"probabilities must be (Z={layout.shape[0]}, K, {layout.size}, {layout.size}), got {probs.shape}"
        )
    return probs


def restore_probabilities(probs: np.ndarray, layout: SliceLayout) -> np.ndarray:
    """Network probabilities (Z, K, size, size) -> (K, Z, Y, X) float32 on the original grid.

    Bilinear back to the square, padding removed, crop put back; outside the crop the background class
    (0) has probability 1 and the others 0; then back into the input's axis order. Memory: the output
    (K*Z*Y*X float32, twice for a non-canonical axis order); for labels only, :func:`restore_labels` needs
    far less.
    """
    probs = _check_probs(probs, layout)
    back_rows, back_cols = _back_matrices(layout)
    rows, cols = layout.crop
    classes = probs.shape[1]
    out = np.zeros((classes,) + tuple(layout.shape), dtype=np.float32)
    out[0] = 1.0
    for z in range(probs.shape[0]):
        out[:, z, rows, cols] = _restore_slice(probs[z], back_rows, back_cols)
    return _stored(out, layout)


def labels_from_probabilities(probs: np.ndarray) -> np.ndarray:
    """Labels from class probabilities (K, ...): background where it has at least half the probability,
    else the most likely foreground label.

    Plain argmax would call a voxel that is 40% GGO, 35% consolidation and 25% background "background":
    foreground labels split the foreground's probability between them, so background against all of them
    comes first. With one foreground label this is argmax.
    """
    probs = np.asarray(probs)
    if probs.shape[0] < 3:
        return np.argmax(probs, axis=0).astype(np.uint8)
    foreground = 1 + np.argmax(probs[1:], axis=0)
    return np.where(probs[0] < 0.5, foreground, 0).astype(np.uint8)


def restore_labels(probs: np.ndarray, layout: SliceLayout) -> np.ndarray:
    """Labels (Z, Y, X) uint8 (:func:`labels_from_probabilities`) on the original grid, one slice at a time
    (no K*Z*Y*X array)."""
    probs = _check_probs(probs, layout)
    back_rows, back_cols = _back_matrices(layout)
    rows, cols = layout.crop
    out = np.zeros(tuple(layout.shape), dtype=np.uint8)
    for z in range(probs.shape[0]):
        out[z, rows, cols] = labels_from_probabilities(_restore_slice(probs[z], back_rows, back_cols))
    return _stored(out, layout)


def foreground_region_means(probs: np.ndarray, layout: SliceLayout, regions: np.ndarray, count: int) -> np.ndarray:
    """Mean probability of not being background (a one-class lung network's lung probability) over each region
    1..``count`` of ``regions`` (integers on the original grid, in the input's own axis order; 0 is no region).
    Only the slices that hold a region are restored, one at a time: no volume of probabilities is ever made.
    Outside the crop the probability is 0, as in :func:`restore_probabilities`."""
    probs = _check_probs(probs, layout)
    back_rows, back_cols = _back_matrices(layout)
    rows, cols = layout.crop
    canonical = layout.view.forward(np.asarray(regions))
    sums, sizes = np.zeros(count + 1), np.zeros(count + 1)
    for z in np.flatnonzero(canonical.any(axis=(1, 2))):
        sizes += np.bincount(canonical[z].ravel(), minlength=count + 1)
        foreground = 1.0 - _restore_slice(probs[z], back_rows, back_cols)[0]
        sums += np.bincount(canonical[z, rows, cols].ravel(), weights=foreground.ravel(), minlength=count + 1)
    return sums[1:] / np.maximum(sizes[1:], 1)


def _stored(canonical: np.ndarray, layout: SliceLayout) -> np.ndarray:
    """An array (..., Z, Y, X) in the layout's canonical order, in the input's own axis order."""
    view = layout.view
    return canonical if view.is_identity else np.ascontiguousarray(view.backward(canonical))
