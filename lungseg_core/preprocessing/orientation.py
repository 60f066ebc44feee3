"""Storage orientation: any axis order or flip of a CT seen as canonical axial slices.

A CT can be stored with its array axes in any order (axial, coronal or sagittal acquisitions, RAS or LPS,
transposed exports). Everything that works slice by slice (the classical method, 2D networks in training
and inference) works on the canonical view, so a coronal-stored CT is cut into axial slices like any other.
"""

from __future__ import annotations

import itertools

import numpy as np

from lungseg_core.io.volume import Volume, reorder_array, reorder_axes


class CanonicalView:
    """Reorders the last three (z, y, x) axes of an array so they run inferior->superior,
    anterior->posterior, right->left (the radiological display of axial slices).

    Works for any storage orientation close to axial (LPS, RAS, flipped, transposed): each array axis is
    matched to the LPS axis its direction column is closest to. ``forward`` and ``backward`` return views;
    leading axes (classes, channels) are left alone.
    """

    def __init__(self, volume: Volume):
        direction = np.abs(volume.direction)  # rows: L, P, S ; columns: i, j, k (= numpy axes 2, 1, 0)
        best = max(itertools.permutations(range(3)), key=lambda p: sum(direction[p[c], c] for c in range(3)))
        # best[ijk] = LPS axis of array axis ijk. Canonical numpy axis c holds LPS axis 2 - c.
        lps_of_numpy = {2 - ijk: best[ijk] for ijk in range(3)}
        self.perm = tuple(next(n for n in range(3) if lps_of_numpy[n] == 2 - c) for c in range(3))
        self.flips = tuple(
            bool(volume.direction[2 - c, 2 - self.perm[c]] < 0) for c in range(3)
        )
        self.spacing_zyx = tuple(volume.spacing[2 - n] for n in self.perm)

    @classmethod
    def of_axes(cls, perm: tuple[int, int, int], flips: tuple[bool, bool, bool],
                spacing_zyx: tuple[float, float, float] | None = None) -> "CanonicalView":
        """The view with a known axis order and flips (as recorded by :class:`SliceLayout`)."""
        view = cls.__new__(cls)
        view.perm, view.flips = tuple(int(a) for a in perm), tuple(bool(f) for f in flips)
        view.spacing_zyx = None if spacing_zyx is None else tuple(spacing_zyx)
        return view

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flips)

    def forward(self, array: np.ndarray) -> np.ndarray:
        return reorder_array(array, self.perm, self.flips)

    def backward(self, array: np.ndarray) -> np.ndarray:
        lead = np.ndim(array) - 3
        axes = [lead + c for c in range(3) if self.flips[c]]
        out = np.flip(array, axis=axes) if axes else array
        return np.transpose(out, tuple(range(lead)) + tuple(lead + axis for axis in np.argsort(self.perm)))

    def stored_shape(self, canonical_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The stored (z, y, x) shape of an array whose canonical shape is ``canonical_shape``."""
        stored = [0, 0, 0]
        for c, axis in enumerate(self.perm):
            stored[axis] = int(canonical_shape[c])
        return tuple(stored)

    def volume(self, volume: Volume) -> Volume:
        """``volume`` stored canonically: same voxels at the same patient positions (an array view)."""
        return volume if self.is_identity else reorder_axes(volume, self.perm, self.flips)


def axial_view(volume: Volume) -> CanonicalView:
    """The view that slice networks cut into axial slices: canonical for a CT, as stored for a single 2D
    image (whose direction may say nothing about its rows and columns)."""
    if volume.is_2d:
        return CanonicalView.of_axes((0, 1, 2), (False, False, False), tuple(volume.spacing[::-1]))
    return CanonicalView(volume)
