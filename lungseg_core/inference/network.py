"""Whole-volume prediction with a 2D/2.5D network: batched slices, bounded memory, deterministic output."""

from __future__ import annotations

import functools
import threading
from typing import Callable

import numpy as np

from lungseg_core.io.volume import Volume

ProgressCallback = Callable[[float, str], None]


def stage_progress(progress: ProgressCallback | None, start: float, span: float) -> ProgressCallback | None:
    """Map a stage's own 0..1 progress into its share (``start`` .. ``start + span``) of the whole run."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + span * fraction, message)
# Slices per forward pass when the caller does not say: on CPU small batches stay in cache (4 was 25-35%
# faster than 8 for 160 px slices on 2 cores, benchmarks/bench_segment.py); GPUs want more work per call.
CPU_BATCH = 4
ACCELERATOR_BATCH = 16


class Cancelled(Exception):
    """Raised when the user cancels a running segmentation."""


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("segmentation cancelled")


def predict_slice_probabilities(
    network,
    slices: np.ndarray,
    device,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Softmax probabilities (Z, K, H, W) float16 for prepared slices (Z, C, H, W).

    Slices go through the network ``batch_size`` at a time so memory stays bounded by the batch, not the
    volume; the low-resolution result is kept in float16 (half the memory, well within argmax precision).
    Mixed precision is used on CUDA only; on CPU float32 keeps results bit-identical between runs.
    Channels-last layout on CPU and CUDA: oneDNN and cuDNN (tensor cores) run 2D convolutions fastest in it
    (other backends keep the default layout, which every op supports).
    """
    import torch

    out: np.ndarray | None = None
    device_type = torch.device(device).type
    use_amp = device_type == "cuda"
    batch_size = batch_size or (CPU_BATCH if device_type == "cpu" else ACCELERATOR_BATCH)
    layout = torch.channels_last if device_type in ("cpu", "cuda") else torch.contiguous_format
    network.to(memory_format=layout)
    height, width = slices.shape[-2:]
    divisor = int(getattr(network, "size_divisor", 1))
    pad_h, pad_w = (-height) % divisor, (-width) % divisor  # networks need sizes divisible by their depth
    with torch.inference_mode():
        for start in range(0, len(slices), batch_size):
            check_cancel(cancel)
            batch = torch.from_numpy(np.ascontiguousarray(slices[start:start + batch_size], dtype=np.float32)).to(device)
            if pad_h or pad_w:
                batch = torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
            batch = batch.contiguous(memory_format=layout)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                logits = network(batch)[..., :height, :width]
            # float16 on the device: half the bytes cross to the host (same rounding as numpy's astype)
            probs = torch.softmax(logits.float(), dim=1).to(torch.float16).cpu().numpy()
            if out is None:
                out = np.empty((len(slices),) + probs.shape[1:], dtype=np.float16)
            out[start:start + len(probs)] = probs
            if progress is not None:
                progress(min(1.0, (start + len(probs)) / len(slices)), "network inference")
    assert out is not None, "no slices to predict"
    return out


def predict_probabilities(
    network,
    volume: Volume,
    slice_spec_dict: dict,
    device,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    kind: str | None = None,
    mirror: bool = False,
    planes: np.ndarray | None = None,
):
    """Class probabilities (Z, K, size, size) float16 of a slice network at its own resolution, and the
    :class:`SliceLayout` that takes them back to the input's grid (``restore_labels`` /
    ``restore_probabilities``).

    ``planes``: increasing indices along the head-foot axis of the input's canonical view (``layout.view``;
    axis 0 for ordinary axial storage) of the only slices to predict; the slices between two of them get
    linearly interpolated probabilities, the others are background.

    ``mirror`` (test-time augmentation, from the card's ``test_time_mirror``): the probabilities are the
    mean of the slices as they are and mirrored left-right, which evens out side-dependent errors at
    twice the network time.
    """
    from lungseg_core.preprocessing.slices import SliceSpec, prepare_slices

    spec = SliceSpec.from_dict(slice_spec_dict)
    slices, layout = prepare_slices(volume, spec, kind=kind)
    if planes is not None:
        slices = slices[np.asarray(planes, dtype=np.intp)]
    # with the mirror image the two passes share the progress bar (it would otherwise run twice)
    share = 0.5 if mirror else 1.0
    probs = predict_slice_probabilities(network, slices, device, batch_size, stage_progress(progress, 0, share), cancel)
    if mirror:
        mirrored = predict_slice_probabilities(network, np.ascontiguousarray(slices[..., ::-1]), device,
                                               batch_size, stage_progress(progress, share, share), cancel)
        probs = ((probs.astype(np.float32) + mirrored[..., ::-1]) / 2).astype(np.float16)
    del slices
    check_cancel(cancel)
    if planes is not None:
        probs = _planes_into_volume(probs, planes, layout.shape[0])
    return probs, layout


def predict_labels(network, volume: Volume, slice_spec_dict: dict, device, batch_size: int | None = None,
                   progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
                   kind: str | None = None, mirror: bool = False, planes: np.ndarray | None = None) -> np.ndarray:
    """Label volume (z, y, x) uint8 from a slice network, in the input's own grid (options as
    :func:`predict_probabilities`)."""
    return predict_labels_and_region_probability(network, volume, slice_spec_dict, device, batch_size, progress,
                                                 cancel, kind, mirror, planes)[0]


def predict_labels_and_region_probability(network, volume: Volume, slice_spec_dict: dict, device,
                                          batch_size: int | None = None, progress: ProgressCallback | None = None,
                                          cancel: threading.Event | None = None, kind: str | None = None,
                                          mirror: bool = False, planes: np.ndarray | None = None):
    """:func:`predict_labels` and, from the same pass, ``region_probability(regions, count)``: the mean probability
    of not being background (a one-class lung network's lung probability) over each region 1..count of an integer
    array on the input grid, computed only when asked and without a volume of probabilities
    (:func:`~lungseg_core.preprocessing.slices.foreground_region_means`)."""
    from lungseg_core.preprocessing.slices import foreground_region_means, restore_labels

    probs, layout = predict_probabilities(network, volume, slice_spec_dict, device, batch_size, progress, cancel,
                                          kind, mirror, planes)
    # one slice at a time back to the input grid: never a K x Z x Y x X float array
    return restore_labels(probs, layout), functools.partial(foreground_region_means, probs, layout)


def _planes_into_volume(probs: np.ndarray, planes: np.ndarray, depth: int) -> np.ndarray:
    """(len(planes), K, h, w) probabilities of increasing ``planes`` -> (depth, K, h, w): linear
    interpolation between predicted planes, certain background outside them."""
    planes = np.asarray(planes, dtype=np.intp)
    full = np.zeros((depth,) + probs.shape[1:], dtype=probs.dtype)
    full[:, 0] = 1
    full[planes] = probs
    for index, (below, above) in enumerate(zip(planes[:-1], planes[1:])):
        for z in range(below + 1, above):
            weight = (z - below) / (above - below)
            full[z] = (1 - weight) * probs[index].astype(np.float32) + weight * probs[index + 1]
    return full


def _patch_starts(length: int, patch: int, step: int) -> list[int]:
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch, step))
    return starts + [length - patch]


def predict_labels_3d(
    network,
    volume: Volume,
    card: dict,
    device,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Label volume from a 3D network by overlapping patches (half-patch stride, averaged probabilities).

    The network sees the CT in the canonical view (head-foot, anterior-posterior, right-left, as 2D networks
    do), whatever the storage order; the labels come back in the input's own axis order.
    Probabilities are accumulated at full resolution in float32 per class: K x Z x Y x X x 4 bytes.
    """
    import torch

    from lungseg_core.preprocessing.intensity import LUNG_WINDOW, check_intensity, to_unit_range
    from lungseg_core.preprocessing.orientation import axial_view
    from lungseg_core.preprocessing.slices import labels_from_probabilities

    kind = kind or check_intensity(volume)
    window = tuple(card.get("slice_spec", {}).get("window", LUNG_WINDOW))
    view = axial_view(volume)
    image = to_unit_range(view.forward(volume.array).astype(np.float32), kind, window)
    patch = tuple(min(p, s) for p, s in zip(card.get("patch_size", (32, 96, 96)), image.shape))
    divisor = int(card.get("size_divisor", 8))
    padded_shape = tuple(int(np.ceil(p / divisor) * divisor) for p in patch)
    padded = np.zeros(tuple(max(a, b) for a, b in zip(image.shape, padded_shape)), np.float32)
    padded[: image.shape[0], : image.shape[1], : image.shape[2]] = image
    starts = [_patch_starts(n, p, max(1, p // 2)) for n, p in zip(padded.shape, padded_shape)]
    total = np.zeros((card["num_classes"],) + padded.shape, np.float32)
    counts = np.zeros(padded.shape, np.float32)
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    with torch.inference_mode():
        for index, (z, y, x) in enumerate(corners):
            check_cancel(cancel)
            region = (slice(z, z + padded_shape[0]), slice(y, y + padded_shape[1]), slice(x, x + padded_shape[2]))
            batch = torch.from_numpy(np.ascontiguousarray(padded[region]))[None, None].to(device)
            probs = torch.softmax(network(batch).float(), dim=1)[0].cpu().numpy()
            total[(slice(None),) + region] += probs
            counts[region] += 1.0
            if progress is not None:
                progress((index + 1) / len(corners), "network inference (3D patches)")
    labels = labels_from_probabilities(total / np.maximum(counts, 1.0))
    return np.ascontiguousarray(view.backward(labels[: image.shape[0], : image.shape[1], : image.shape[2]]))
