"""Storage orientation: the canonical view of any axis order and flip, and re-stored volumes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lungseg_core.io.volume import Volume, reorder_axes
from lungseg_core.postprocessing.lungs import axial_axis
from lungseg_core.preprocessing.orientation import CanonicalView, axial_view
from lungseg_core.synthetic import make_chest_phantom

ORIENTATIONS = {"lps": (False, False, False), "ras_like": (True, True, False), "all_flipped": (True, True, True)}
STORAGES = [(axes, flips) for axes in itertools.permutations(range(3)) for flips in ((False,) * 3, (True, False, True))]


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_canonical_view_round_trip(name):
    phantom = make_chest_phantom(shape=(8, 10, 12)).reoriented(ORIENTATIONS[name])
    view = CanonicalView(phantom.ct)
    canon = view.forward(phantom.ct.array)
    assert canon.shape == (8, 10, 12)
    np.testing.assert_array_equal(view.backward(canon), phantom.ct.array)
    assert axial_axis(phantom.ct) == 0


def test_canonical_view_of_transposed_storage():
    """A volume stored with x and z swapped: the head-foot axis is numpy axis 2."""
    volume = Volume(np.zeros((4, 5, 6)), direction=np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    assert axial_axis(volume) == 2
    assert CanonicalView(volume).forward(volume.array).shape == (6, 5, 4)


@pytest.mark.parametrize("axes, flips", STORAGES)
def test_reordered_storage_keeps_every_voxel_where_it_is(axes, flips):
    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(size=(3, 4, 5)), spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.0, 30.0),
                    direction=np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float))  # a coronal series
    stored = reorder_axes(volume, axes, flips)
    for zyx in itertools.product(*(range(n) for n in stored.shape)):
        original = np.array(zyx)[np.argsort(axes)]
        original = np.where(np.array(flips)[np.argsort(axes)],
                            np.array(volume.shape) - 1 - original, original)
        assert stored.array[zyx] == volume.array[tuple(original)]
        np.testing.assert_allclose(stored.zyx_to_lps(np.array([zyx])), volume.zyx_to_lps(original[None]))


@pytest.mark.parametrize("axes, flips", STORAGES)
def test_every_storage_has_the_same_canonical_volume(axes, flips):
    ct = make_chest_phantom(shape=(6, 10, 12)).ct
    stored = reorder_axes(ct, axes, flips)
    view = CanonicalView(stored)
    canonical = view.volume(stored)
    np.testing.assert_array_equal(canonical.array, ct.array)
    np.testing.assert_allclose(canonical.direction, ct.direction, atol=1e-12)
    np.testing.assert_allclose(canonical.origin, ct.origin)
    assert canonical.spacing == ct.spacing and view.spacing_zyx == ct.spacing[::-1]
    assert view.stored_shape(canonical.shape) == stored.shape
    classes = np.stack([stored.array, -stored.array])  # a leading class axis is left alone
    np.testing.assert_array_equal(view.forward(classes)[1], -ct.array)
    np.testing.assert_array_equal(view.backward(view.forward(classes)), classes)
    assert CanonicalView.of_axes(view.perm, view.flips).volume(stored).array.tobytes() == canonical.array.tobytes()


def test_a_single_slice_is_sliced_as_stored():
    """A 2D image's direction says nothing about its rows and columns: it is never reordered."""
    image = Volume(np.zeros((1, 4, 6)), direction=np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], float), is_2d=True)
    view = axial_view(image)
    assert view.is_identity and view.forward(image.array).shape == (1, 4, 6)
    assert not axial_view(Volume(np.zeros((2, 4, 6)), direction=image.direction)).is_identity
