"""Thick-slice synthesis: slab means, majority labels, geometry, and its use in training."""

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume
from lungseg_core.synthetic.thick_slices import slab_factor, thicken_slices
from lungseg_core.training.config import TrainConfig
from lungseg_core.training.sampling import build_training_data


def test_slabs_average_intensity_and_keep_majority_labels():
    array = np.zeros((5, 2, 2), np.int16)
    array[:, 0, 0] = [-1000, -1000, 0, 0, 7]  # lung over liver: the slab mean is partial volume
    labels = np.zeros((5, 2, 2), np.uint8)
    labels[:2, 0, 0] = 1
    labels[0, 1, 1] = 2  # one of two voxels: a tie keeps the label, a minority would not
    ct = Volume(array, spacing=(0.7, 0.7, 2.5), origin=(0.0, 0.0, -100.0))
    thick, thick_labels = thicken_slices(ct, labels, 2)
    assert thick.shape == (2, 2, 2) and thick.array.dtype == np.int16  # the trailing odd slice is dropped
    assert thick.array[0, 0, 0] == -1000 and thick.array[1, 0, 0] == 0
    assert thick.spacing == (0.7, 0.7, 5.0) and thick.origin == (0.0, 0.0, -98.75)  # slab centres
    assert thick_labels[0, 0, 0] == 1 and thick_labels[1, 0, 0] == 0 and thick_labels[0, 1, 1] == 2
    thick3, labels3 = thicken_slices(ct, labels, 3)
    assert labels3[0, 0, 0] == 1 and labels3[0, 1, 1] == 0  # 2 of 3 voxels vs 1 of 3
    assert thicken_slices(ct, labels, 1)[0] is ct
    assert slab_factor(1.25, 10.0) == 8 and slab_factor(12.0, 5.0) == 1


def test_training_takes_thick_variants_when_asked():
    base = {"name": "t", "task": "lungs", "architecture": "unet", "num_classes": 2,
            "data": [{"layout": "phantom", "role": "train", "options": {"cases": 2, "shape": [24, 32, 32], "seed": 1}},
                     {"layout": "phantom", "role": "val", "options": {"cases": 1, "shape": [24, 32, 32], "seed": 2}}],
            "slice_spec": {"size": 32, "context": 0}, "keep_empty_fraction": 1.0, "drop_noninformative": False}
    plain = build_training_data(TrainConfig.from_dict(base))
    thick = build_training_data(TrainConfig.from_dict({**base, "thick_slices": {"probability": 1.0, "thickness_mm": [12, 12]}}))
    assert all("+thick" in name for name in thick.train_cases) and not any("+thick" in n for n in thick.val_cases)
    assert len(thick.train) < len(plain.train) and len(thick.val) == len(plain.val)
    with pytest.raises(InputError, match="thick_slices"):
        TrainConfig.from_dict({**base, "thick_slices": {"chance": 0.5}})
