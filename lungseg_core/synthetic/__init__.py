"""Synthetic chest phantoms with exactly known labels, for tests, benchmarks and training data."""

from lungseg_core.synthetic.phantoms import ChestPhantom, flip_axes, make_chest_phantom

__all__ = ["ChestPhantom", "flip_axes", "make_chest_phantom"]
