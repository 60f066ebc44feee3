"""Infection post-processing: infection exists only inside the lungs."""

from __future__ import annotations

import numpy as np

from lungseg_core.postprocessing.lungs import remove_small_components

__all__ = ["restrict_infection", "remove_small_components"]


def restrict_infection(infection: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Infection labels (1 GGO, 2 consolidation) with everything outside the lung mask set to 0."""
    infection = np.asarray(infection)
    lungs = np.asarray(lungs)
    if infection.shape != lungs.shape:
        raise ValueError(f"infection shape {infection.shape} differs from lung shape {lungs.shape}")
    return np.where(lungs > 0, infection, 0).astype(np.uint8)
