"""A chest phantom in Hounsfield units: body, two lungs with vessels, trachea, spine, bowel gas, lesions.

The right lung sits at the patient's right (negative LPS x) whatever the storage orientation, so
left/right handling can be tested on LPS, RAS and flipped inputs with the same known answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungseg_core.io.volume import Volume, reorder_array, reorder_axes
from lungseg_core.labels import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG


@dataclass
class ChestPhantom:
    ct: Volume  # HU, int16
    lungs: np.ndarray  # uint8 (z, y, x): 1 right, 2 left
    infection: np.ndarray  # uint8 (z, y, x): 1 GGO, 2 consolidation

    def reoriented(self, flips: tuple[bool, bool, bool]) -> "ChestPhantom":
        """The same physical phantom stored with some (x, y, z) array axes flipped."""
        return ChestPhantom(
            flip_axes(self.ct, flips),
            _flip_array(self.lungs, flips),
            _flip_array(self.infection, flips),
        )


def _flip_array(array: np.ndarray, flips_xyz: tuple[bool, bool, bool]) -> np.ndarray:
    return reorder_array(array, (0, 1, 2), tuple(flips_xyz[::-1])).copy()  # a C-ordered copy


def flip_axes(volume: Volume, flips_xyz: tuple[bool, bool, bool]) -> Volume:
    """Store ``volume`` with the chosen array axes reversed, keeping every voxel's physical position."""
    flipped = reorder_axes(volume, (0, 1, 2), tuple(flips_xyz[::-1]))
    return flipped.with_array(flipped.array.copy())


def _ellipsoid(grid: tuple[np.ndarray, ...], center, radii) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def make_chest_phantom(
    shape: tuple[int, int, int] = (48, 96, 96),
    spacing: tuple[float, float, float] = (3.5, 3.5, 6.0),
    ggo: bool = True,
    consolidation: bool = True,
    touching_lungs: bool = False,
    noise_hu: float = 20.0,
    seed: int = 0,
) -> ChestPhantom:
    """Build a phantom in LPS-identity storage; ``shape`` is (z, y, x), ``spacing`` (x, y, z) in mm.

    Array x grows toward the patient's left, y toward posterior, z toward superior (head).
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    # normalised coordinates in [-1, 1]
    zn, yn, xn = (2 * z / (nz - 1) - 1), (2 * y / (ny - 1) - 1), (2 * x / (nx - 1) - 1)
    grid = (zn, yn, xn)

    ct = np.full(shape, -1000.0)
    body = (xn / 0.9) ** 2 + (yn / 0.7) ** 2 <= 1.0
    ct[body] = 40.0
    ct[_ellipsoid(grid, (0, 0.45, 0), (2.0, 0.15, 0.12))] = 700.0  # spine, posterior midline

    gap = 0.0 if touching_lungs else 0.12
    right = _ellipsoid(grid, (0.15, 0.0, -0.38 - gap / 2), (0.7, 0.5, 0.34))  # negative x: patient right
    left = _ellipsoid(grid, (0.15, 0.0, 0.38 + gap / 2), (0.7, 0.5, 0.34))
    if touching_lungs:
        left &= ~right
    lungs = np.zeros(shape, np.uint8)
    lungs[right] = RIGHT_LUNG
    lungs[left] = LEFT_LUNG
    ct[lungs > 0] = -860.0

    vessels = (lungs > 0) & (
        _ellipsoid(grid, (0.1, -0.1, -0.35), (0.5, 0.05, 0.05)) | _ellipsoid(grid, (0.1, 0.1, 0.4), (0.5, 0.05, 0.05))
    )
    ct[vessels] = 40.0  # vessels inside the lung are lung by label

    trachea = _ellipsoid(grid, (0.8, -0.15, 0.0), (0.5, 0.07, 0.07)) & body & (lungs == 0)
    ct[trachea] = -1000.0
    gas = _ellipsoid(grid, (-0.85, -0.2, 0.2), (0.12, 0.12, 0.15)) & body & (lungs == 0)
    ct[gas] = -1000.0  # bowel gas below the lungs

    infection = np.zeros(shape, np.uint8)
    if ggo:
        blob = _ellipsoid(grid, (0.25, -0.05, 0.38 + gap / 2), (0.25, 0.18, 0.14)) & (lungs == LEFT_LUNG)
        infection[blob] = GGO
        ct[blob] = -550.0
    if consolidation:
        # dorsal, touching the pleura: the classic place where thresholding loses lung
        blob = _ellipsoid(grid, (0.0, 0.42, -0.4 - gap / 2), (0.28, 0.2, 0.2)) & (lungs == RIGHT_LUNG)
        infection[blob] = CONSOLIDATION
        ct[blob] = 30.0

    ct += rng.normal(0.0, noise_hu, shape)
    volume = Volume(np.clip(ct, -1024, 3071).astype(np.int16), spacing=spacing, name="phantom")
    return ChestPhantom(volume, lungs, infection)
