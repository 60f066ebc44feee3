"""Whole-volume prediction with a 2D/2.5D network: batched slices, bounded memory, deterministic output."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from lungseg_core.io.volume import Volume

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised when the user cancels a running segmentation."""


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("segmentation cancelled")


def predict_slice_probabilities(
    network,
    slices: np.ndarray,
    device,
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Softmax probabilities (Z, K, H, W) float16 for prepared slices (Z, C, H, W).

    Slices go through the network ``batch_size`` at a time so memory stays bounded by the batch, not the
    volume; the low-resolution result is kept in float16 (half the memory, well within argmax precision).
    Mixed precision is used on CUDA only; on CPU float32 keeps results bit-identical between runs.
    """
    import torch

    out: np.ndarray | None = None
    use_amp = torch.device(device).type == "cuda"
    with torch.inference_mode():
        for start in range(0, len(slices), batch_size):
            _check_cancel(cancel)
            batch = torch.from_numpy(np.ascontiguousarray(slices[start:start + batch_size], dtype=np.float32)).to(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                logits = network(batch)
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float16)
            if out is None:
                out = np.empty((len(slices),) + probs.shape[1:], dtype=np.float16)
            out[start:start + len(probs)] = probs
            if progress is not None:
                progress(min(1.0, (start + len(probs)) / len(slices)), "network inference")
    assert out is not None, "no slices to predict"
    return out


def predict_labels(
    network,
    volume: Volume,
    slice_spec_dict: dict,
    device,
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Label volume (z, y, x) uint8 from a slice network, in the input's own grid."""
    from lungseg_core.preprocessing.slices import SliceSpec, prepare_slices, restore_probabilities

    spec = SliceSpec.from_dict(slice_spec_dict)
    slices, layout = prepare_slices(volume, spec, kind=kind)
    probs = predict_slice_probabilities(network, slices, device, batch_size, progress, cancel)
    del slices
    _check_cancel(cancel)
    return _argmax_in_chunks(probs, layout, volume.shape)


def _argmax_in_chunks(probs: np.ndarray, layout, shape: tuple[int, int, int], chunk: int = 32) -> np.ndarray:
    """Restore probabilities to the input grid a few slices at a time and keep only the argmax.

    Restoring all classes at full resolution at once would cost K x Z x Y x X float32 (about 0.8 GB for a
    512x512x261 CT with 3 classes); chunking keeps it to ``chunk`` slices.
    """
    from lungseg_core.preprocessing.slices import restore_probabilities

    labels = np.zeros(shape, dtype=np.uint8)
    for start in range(0, shape[0], chunk):
        stop = min(shape[0], start + chunk)
        restored = restore_probabilities(probs[start:stop].astype(np.float32), layout.for_slices(start, stop))
        labels[start:stop] = np.argmax(restored, axis=0).astype(np.uint8)
    return labels
