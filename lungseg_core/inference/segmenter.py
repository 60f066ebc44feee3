"""One small inference class: a model name or path in, a labelled array out (lungmask-style)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.inference.device import resolve_device
from lungseg_core.inference.network import Cancelled, ProgressCallback, predict_labels, predict_labels_3d
from lungseg_core.io.volume import Volume
from lungseg_core.models import zoo


class Segmenter:
    """Segment ``task`` ("lungs" or "infection") with a model from the zoo, a model file, or ``threshold``.

    >>> labels = Segmenter("default", task="lungs").predict(volume)   # 1 right lung, 2 left lung
    """

    def __init__(self, model: str = "default", task: str = "lungs", device: str = "auto", batch_size: int = 8):
        if task not in zoo.TASKS:
            raise InputError(f"Unknown task '{task}'", f"use one of {', '.join(zoo.TASKS)}")
        self.task = task
        self.card: dict[str, Any] = zoo.resolve_card(model, task)
        self.batch_size = batch_size
        self._device_name = device
        self._loaded: zoo.LoadedModel | None = None

    @property
    def is_classical(self) -> bool:
        return self.card["architecture"] == "classical"

    @property
    def name(self) -> str:
        return self.card["name"]

    def provenance(self) -> dict[str, Any]:
        """Name and weights hash for result files."""
        return {"task": self.task, "name": self.name, "architecture": self.card["architecture"], "sha256": self.card.get("sha256")}

    def _network(self) -> zoo.LoadedModel:
        if self._loaded is None:
            self._loaded = zoo.load_card(self.card, self.task, resolve_device(self._device_name))
        return self._loaded

    @property
    def spatial_dims(self) -> int:
        return int(self.card.get("spatial_dims", 2))

    def check_input(self, volume: Volume) -> None:
        if volume.is_2d and self.spatial_dims == 3:
            raise InputError(
                f"Model '{self.name}' needs a 3D volume but the input is a single 2D slice",
                "give the whole CT series (NIfTI/NRRD/DICOM folder) or choose a 2D model (see `lungseg models`)",
            )

    def predict(
        self,
        volume: Volume,
        lungs: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        kind: str | None = None,
    ) -> np.ndarray:
        """Labels (z, y, x) uint8 in the input grid. Infection needs the lung labels to stay inside them."""
        from lungseg_core.postprocessing import restrict_infection

        self.check_input(volume)
        if self.task == "infection" and lungs is None:
            raise InputError("Infection segmentation needs the lung labels", "segment the lungs first (task 'all')")
        if cancel is not None and cancel.is_set():
            raise Cancelled("segmentation cancelled")
        if self.is_classical:
            from lungseg_core.models.classical import classical_infection, classical_lungs

            labels = classical_lungs(volume) if self.task == "lungs" else classical_infection(volume, lungs)
        else:
            labels = self.network_labels(volume, progress, cancel, kind)
            if self.task == "lungs":
                labels = self.lungs_from_network(labels, volume)
        if self.task == "infection":
            labels = restrict_infection(labels, lungs)
        return labels.astype(np.uint8)

    def network_labels(self, volume: Volume, progress: ProgressCallback | None = None,
                       cancel: threading.Event | None = None, kind: str | None = None) -> np.ndarray:
        """The network's own labels, before any post-processing, with the card's inference options."""
        loaded = self._network()
        if self.spatial_dims == 3:
            return predict_labels_3d(loaded.network, volume, self.card, loaded.device, progress, cancel, kind=kind)
        return predict_labels(loaded.network, volume, self.card["slice_spec"], loaded.device, self.batch_size,
                              progress, cancel, kind=kind, mirror=bool(self.card.get("test_time_mirror")))

    def lungs_from_network(self, labels: np.ndarray, volume: Volume) -> np.ndarray:
        """Cleaned network lungs, or (cards with ``combine_with_classical``) the classical lungs plus the
        network's dense lung."""
        from lungseg_core.postprocessing import add_dense_lung, clean_lungs

        if not self.card.get("combine_with_classical"):
            return clean_lungs(labels, volume)
        from lungseg_core.models.classical import classical_lungs
        from lungseg_core.preprocessing.intensity import hu_from_display

        hu = volume.array if volume.intensity == "hu" else hu_from_display(volume.array)
        return add_dense_lung(classical_lungs(volume), labels > 0, hu, volume)
