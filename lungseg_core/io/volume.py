"""The in-memory volume every stage works on: a voxel array plus its patient-space geometry."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# Intensity kinds: "hu" for Hounsfield units; "display" for 8-bit images already windowed for lungs
# (exported PNG/JPG slices, the 0-255 Radiopaedia cases of COVID-19-CT-Seg).
INTENSITY_KINDS = ("hu", "display")
# Spacings are kept to 12 significant digits. Readers give the same file's spacing with float noise in the
# last bits (1.40625 from SimpleITK, 1.4062499999999998 from 3D Slicer's reader), and that noise decided which
# lung a few midline voxels joined (distance ties in the left/right split). No scanner spacing has more digits.
SPACING_DIGITS = 12


@dataclass
class Volume:
    """A 3D image in numpy (z, y, x) order with geometry in LPS patient coordinates (ITK/DICOM convention).

    ``spacing`` is (x, y, z) in mm, ``origin`` the LPS position of voxel (0, 0, 0) and ``direction`` a 3x3
    matrix whose columns are the LPS directions of the i, j, k (x, y, z) array axes. A 2D slice is a volume
    of depth 1 with ``is_2d`` set.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    intensity: str = "hu"
    is_2d: bool = False
    name: str = "volume"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3D (z, y, x), got shape {self.array.shape}")
        self.spacing = tuple(float(f"{float(s):.{SPACING_DIGITS}g}") for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing_known(self) -> bool:
        """False for image files (PNG/JPG): they carry no pixel spacing or orientation (1 mm pixels assumed)."""
        return self.metadata.get("spacing_known", True) is not False

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (spacing is in mm; 1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) = (x, y, z) array indices to LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def zyx_to_lps(self, zyx: np.ndarray) -> np.ndarray:
        """LPS positions (N, 3) of numpy (z, y, x) indices (N, 3); fractional indices are fine."""
        ijk = np.asarray(zyx, dtype=float)[..., ::-1]
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def with_array(self, array: np.ndarray, **changes: Any) -> "Volume":
        """A volume with the same geometry and a new array (e.g. a labelmap)."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.shape}")
        return replace(self, array=array, metadata=dict(self.metadata), **changes)

    def geometry(self) -> dict[str, Any]:
        """Geometry as plain JSON-friendly values (for reports and result files)."""
        return {
            "size_xyz": [int(s) for s in self.shape[::-1]],
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "origin_lps_mm": [round(o, 6) for o in self.origin],
            "direction_lps": [round(float(v), 6) for v in self.direction.flatten()],
            "is_2d": self.is_2d,
            "intensity": self.intensity,
        }

    def same_geometry(self, other: "Volume", tol: float = 1e-4) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol * 100)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def to_sitk(self):
        """SimpleITK image with this geometry (imported lazily: reading is possible without it)."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.flatten()))
        return image

    @classmethod
    def from_sitk(cls, image, **kwargs: Any) -> "Volume":
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise ValueError("from_sitk expects a 3D image")
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=np.array(image.GetDirection()).reshape(3, 3),
            **kwargs,
        )


def reorder_axes(volume: Volume, axes: tuple[int, int, int],
                 flips: tuple[bool, bool, bool] = (False, False, False)) -> Volume:
    """``volume`` stored differently: numpy axis c is its numpy axis ``axes[c]``, reversed where ``flips[c]``.
    Every voxel keeps its patient position (direction, spacing and origin follow); the array is a view."""
    columns, spacing, origin = [], [], np.asarray(volume.origin, dtype=float)
    for c in (2, 1, 0):  # the new i, j, k axes are numpy axes 2, 1, 0
        ijk = 2 - axes[c]
        column = np.asarray(volume.direction[:, ijk], dtype=float)
        if flips[c]:  # the new index 0 is the old axis' last voxel
            origin = origin + column * volume.spacing[ijk] * (volume.shape[axes[c]] - 1)
            column = -column
        columns.append(column)
        spacing.append(volume.spacing[ijk])
    return replace(volume, array=reorder_array(volume.array, axes, flips), spacing=tuple(spacing),
                   origin=tuple(origin), direction=np.column_stack(columns), metadata=dict(volume.metadata))


def reorder_array(array: np.ndarray, axes: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> np.ndarray:
    """The last three axes of ``array`` reordered as :func:`reorder_axes` does (a view); leading axes
    (classes, channels) stay first."""
    lead = np.ndim(array) - 3
    out = np.transpose(array, tuple(range(lead)) + tuple(lead + axis for axis in axes))
    flipped = [lead + c for c in range(3) if flips[c]]
    return np.flip(out, axis=flipped) if flipped else out


def patient_left_score(volume: Volume, mask: np.ndarray) -> float:
    """LPS x (mm) of a mask's centroid: larger means further toward the patient's left."""
    zyx = np.argwhere(mask)
    if zyx.size == 0:
        raise ValueError("empty mask has no centroid")
    return float(volume.zyx_to_lps(zyx.mean(axis=0, keepdims=True))[0, 0])


def sides_swapped(volume: Volume, right: np.ndarray, left: np.ndarray) -> bool:
    """Whether a mask called "right lung" lies toward the patient's left of the one called "left lung".

    The one test of label sides against patient geometry (LPS x of the centroids), for the readers of
    datasets whose "left" may be the viewer's and for references given to ``lungseg evaluate``.
    """
    return patient_left_score(volume, right) > patient_left_score(volume, left)
