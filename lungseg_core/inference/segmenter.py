"""One small inference class: a model name or path in, a labelled array out (lungmask-style)."""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.inference.device import resolve_device
from lungseg_core.inference.network import (ProgressCallback, check_cancel, predict_labels, predict_labels_3d,
                                            predict_labels_and_region_probability, predict_probabilities,
                                            stage_progress)
from lungseg_core.io.volume import Volume
from lungseg_core.postprocessing.lungs import RegionProbability
from lungseg_core.preprocessing.cropping import crop_volume, lung_bounding_box
from lungseg_core.preprocessing.orientation import axial_view
from lungseg_core.models import zoo

# The network sees the slices of the classical lungs and this much beyond: consolidated lung at an apex or
# base that thresholding missed entirely is still reached, the rest of a long scan is not.
COMBINED_PLANE_MARGIN_MM = 15.0
# ... and of those only one every this many mm (thin-slice CTs), the slices between interpolated: the network
# marks consolidation centimetres across and only adds to the classical lungs, while its time grows with the
# slice count (lungsegai-lungs trained on 2.5-10 mm slices). On LIDC-IDRI-0002 (1.25 mm) with consolidation
# inserted at the chest wall or on any lung surface (seeds 1000-1001), Dice with every slice, every 2.5 mm and
# every 5 mm agreed within 0.0005, at 15.6, 12.8 and 9.2 s per CT.
COMBINED_PLANE_STEP_MM = 5.0


class FusionInputs(NamedTuple):
    """What a ``combine_with_classical`` card fuses (:meth:`Segmenter.fusion_inputs`)."""

    classical: np.ndarray  # classical lungs, 1 right / 2 left
    network: np.ndarray | None  # the network's labels; None where the classical method finds no lung
    hu: np.ndarray
    # the network's mean lung probability per region, ``(regions, count) -> means`` (2D networks), from the same pass;
    # None for 3D networks and where ``network`` is None
    region_lung_probability: RegionProbability | None


class Segmenter:
    """Segment ``task`` ("lungs" or "infection") with a model from the zoo, a model file, or ``threshold``.

    >>> labels = Segmenter("default", task="lungs").predict(volume)   # 1 right lung, 2 left lung
    """

    def __init__(self, model: str = "default", task: str = "lungs", device: str = "auto", batch_size: int | None = None):
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
        notes: list[str] | None = None,
    ) -> np.ndarray:
        """Labels (z, y, x) uint8 in the input grid. Infection needs the lung labels to stay inside them.
        ``notes``, when given, receives what the reader of the result must know (e.g. lung left out)."""
        from lungseg_core.postprocessing import restrict_infection

        self.check_input(volume)
        if self.task == "infection" and lungs is None:
            raise InputError("Infection segmentation needs the lung labels", "segment the lungs first (task 'all')")
        check_cancel(cancel)
        if self.is_classical:
            from lungseg_core.models.classical import classical_infection, classical_lungs

            _report(progress, 0.0, f"classical {self.task}")
            labels = classical_lungs(volume) if self.task == "lungs" else classical_infection(volume, lungs)
            _report(progress, 1.0, f"classical {self.task}")
        else:
            labels = self._network_prediction(volume, lungs, progress, cancel, kind, notes)
        if self.task == "infection":
            labels = restrict_infection(labels, lungs)
        return labels.astype(np.uint8)

    def _network_prediction(self, volume: Volume, lungs: np.ndarray | None, progress: ProgressCallback | None,
                            cancel: threading.Event | None, kind: str | None,
                            notes: list[str] | None = None) -> np.ndarray:
        def run(part: Volume) -> np.ndarray:
            if self.task == "lungs":
                return self.network_lungs(part, progress, cancel, kind, notes)
            return self.network_labels(part, progress, cancel, kind)

        box = self.lung_box(volume, lungs)
        if box is None:
            return run(volume)
        labels = np.zeros(volume.shape, np.uint8)  # outside the lungs' box: background, as in training
        labels[box] = run(crop_volume(volume, box))
        return labels

    def lung_box(self, volume: Volume, lungs: np.ndarray | None = None):
        """For a network trained on lung-cropped slices (card ``crop_to_lungs``, seed 5), the box it must see
        the CT cut to, as in training: the given lungs' box (infection) or the classical lungs' (lungs), plus
        the training margin. None for other networks, and where no lungs are found (training too kept such a
        case whole)."""
        if not self.card.get("crop_to_lungs"):
            return None
        if lungs is None:
            from lungseg_core.models.classical import classical_lungs

            lungs = classical_lungs(volume)
        return lung_bounding_box(lungs, volume) if np.any(lungs) else None

    def network_labels(self, volume: Volume, progress: ProgressCallback | None = None,
                       cancel: threading.Event | None = None, kind: str | None = None) -> np.ndarray:
        """The network's own labels, before any post-processing, with the card's inference options."""
        if self.spatial_dims == 3:
            loaded = self._network()
            return predict_labels_3d(loaded.network, volume, self.card, loaded.device, progress, cancel, kind=kind)
        return self._run_slice_network(predict_labels, volume, progress, cancel, kind)

    def _run_slice_network(self, predict, volume: Volume, progress: ProgressCallback | None = None,
                           cancel: threading.Event | None = None, kind: str | None = None, **options):
        """``predict`` (a slice-network function of ``inference.network``) with this card's network, slice
        settings, device, batch size and mirror option."""
        loaded = self._network()
        return predict(loaded.network, volume, self.card["slice_spec"], loaded.device, self.batch_size, progress,
                       cancel, kind=kind, mirror=bool(self.card.get("test_time_mirror")), **options)

    def network_probabilities(self, volume: Volume, kind: str | None = None) -> np.ndarray:
        """Class probabilities (K, Z, Y, X) float32 of a 2D network in the input grid, with the card's inference
        options, for ensembles of models (K times the volume in memory)."""
        from lungseg_core.preprocessing.slices import restore_probabilities

        if self.spatial_dims != 2:
            raise InputError(f"Model '{self.name}' is not a 2D slice network", "use network_labels for 3D models")
        probs, layout = self._run_slice_network(predict_probabilities, volume, kind=kind)
        return restore_probabilities(probs, layout)

    def network_lungs(self, volume: Volume, progress: ProgressCallback | None = None,
                      cancel: threading.Event | None = None, kind: str | None = None,
                      notes: list[str] | None = None) -> np.ndarray:
        """Cleaned network lungs, or (cards with ``combine_with_classical``) the classical lungs plus the
        network's dense lung. The network can then only add to the classical lungs, so it only sees the
        slices that hold them (and a margin; a CT usually extends beyond the lungs), at most one per
        ``COMBINED_PLANE_STEP_MM``. ``notes`` receives a note when much of the network's lung is left out."""
        from lungseg_core.postprocessing import add_dense_lung, clean_lungs
        from lungseg_core.postprocessing.lungs import dense_lung_stages, left_out_dense_lung_notes

        if not self.card.get("combine_with_classical"):
            return clean_lungs(self.network_labels(volume, progress, cancel, kind), volume)
        fusion = self.fusion_inputs(volume, progress, cancel, kind)
        if fusion.network is None:
            return fusion.classical  # the network only adds to the classical lungs
        _report(progress, 0.9, "adding the network's dense lung")
        stages = dense_lung_stages(fusion.classical, fusion.network > 0, fusion.hu, volume,
                                   fusion.region_lung_probability)
        if notes is not None:
            notes += left_out_dense_lung_notes(stages, volume)
        return add_dense_lung(fusion.classical, fusion.network > 0, fusion.hu, volume, stages)

    def fusion_inputs(self, volume: Volume, progress: ProgressCallback | None = None,
                      cancel: threading.Event | None = None, kind: str | None = None) -> FusionInputs:
        """What a ``combine_with_classical`` card fuses, the network run only on the planes of the classical
        lungs."""
        from lungseg_core.models.classical import classical_lungs
        from lungseg_core.preprocessing.intensity import hu_from_display

        _report(progress, 0.0, "classical lungs")
        classical = classical_lungs(volume)
        hu = volume.array if volume.intensity == "hu" else hu_from_display(volume.array)
        if not classical.any():
            return FusionInputs(classical, None, hu, None)
        check_cancel(cancel)
        # shares of the time measured on LIDC-IDRI-0002 (classical 3 s, network 7 s, fusion 1 s)
        network_progress = stage_progress(progress, 0.3, 0.6)
        if self.spatial_dims == 3:
            return FusionInputs(classical, self.network_labels(volume, network_progress, cancel, kind), hu, None)
        view = axial_view(volume)  # axial planes, whatever the storage order
        spacing_mm = view.spacing_zyx[0]
        planes = every_nth(planes_span(view.forward(classical), spacing_mm, COMBINED_PLANE_MARGIN_MM),
                           int(COMBINED_PLANE_STEP_MM // spacing_mm))
        # only those planes are predicted, the slices between two of them interpolated, the rest background
        network, region_lung_probability = self._run_slice_network(
            predict_labels_and_region_probability, volume, network_progress, cancel, kind, planes=planes)
        return FusionInputs(classical, network, hu, region_lung_probability)


def _report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def planes_span(mask: np.ndarray, spacing_mm: float, margin_mm: float) -> np.ndarray:
    """Indices along array axis 0 from the first plane holding ``mask`` to the last, widened by ``margin_mm``
    (``spacing_mm`` apart) on each side and kept in the array."""
    holding = np.flatnonzero(np.asarray(mask).reshape(len(mask), -1).any(axis=1))
    if holding.size == 0:
        return holding
    margin = int(np.ceil(margin_mm / max(float(spacing_mm), 1e-6)))
    return np.arange(max(holding[0] - margin, 0), min(holding[-1] + margin + 1, len(mask)))


def every_nth(planes: np.ndarray, step: int) -> np.ndarray:
    """Every ``step``-th of ``planes``, always with the last one (so nothing at the end is left out)."""
    if planes.size == 0 or step <= 1:
        return planes
    return np.unique(np.append(planes[::step], planes[-1]))
