"""Post-processing of lung and infection predictions: keep the lungs, fill holes, split sides, restrict."""

from lungseg_core.postprocessing.infection import restrict_infection
from lungseg_core.postprocessing.lungs import (
    add_dense_lung,
    clean_lungs,
    fill_holes,
    remove_small_components,
    split_left_right,
)

__all__ = ["add_dense_lung", "clean_lungs", "fill_holes", "remove_small_components", "restrict_infection", "split_left_right"]
