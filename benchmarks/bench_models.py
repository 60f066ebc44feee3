"""Size and CPU speed of every registered architecture: parameters, MB, GMAC and ms per 256x256 slice.

    python benchmarks/bench_models.py                      # all, 2 threads, 256x256, median of 5
    python benchmarks/bench_models.py --arch resunet unet --threads 4 --json out.json

2D models run one (1, C, 256, 256) slice (C = 3 for the 2.5D ``resunet``, 1 otherwise); ``unet3d`` runs a
(1, 1, 32, 128, 128) patch and also reports ms per 256x256-slice equivalent (same number of voxels).
Timings are eval-mode, ``torch.inference_mode``, float32, batch 1, after one warm-up run; median and min
over interleaved rounds (min is the better estimate on a CPU shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from lungseg_core.io import write_text_atomic
from lungseg_core.models import ARCHITECTURES, build_model, list_architectures

PATCH_3D = (32, 128, 128)


def multiply_accumulates(model: nn.Module, x: torch.Tensor) -> int:
    """Conv / transposed-conv multiply-accumulates of one forward pass (the bulk of the compute)."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.weight[0].numel()  # in_channels/groups x k x k for conv; out x k x k for transposed
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            total += output.numel() * kernel
        else:
            total += inputs[0].numel() * kernel

    kinds = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    with torch.inference_mode():
        model(x)
    for handle in handles:
        handle.remove()
    return total


def prepare(name: str, size: int) -> tuple[nn.Module, torch.Tensor, dict]:
    info = ARCHITECTURES[name]
    in_channels = 3 if name == "resunet" else 1
    model = build_model(name, in_channels=in_channels, num_classes=3).eval()
    shape = (1, in_channels, *(PATCH_3D if info.spatial_dims == 3 else (size, size)))
    x = torch.randn(shape)
    slices = x[0, 0].numel() / (size * size)  # 256x256-slice equivalents in one input
    row = {
        "architecture": name, "input": list(shape), "params": sum(p.numel() for p in model.parameters()),
        "megabytes": round(sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
                           / 2**20, 1),
        "gmac_per_slice": round(multiply_accumulates(model, x) / 1e9 / slices, 2),
        "slices_per_input": slices,
    }
    return model, x, row


def time_once(model: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        model(x)
        return (time.perf_counter() - start) * 1000


def bench(names: list[str], size: int, repeats: int) -> list[dict]:
    """Rounds interleave the models, so load from other processes on a shared CPU hits all of them alike."""
    prepared = [prepare(name, size) for name in names]
    for model, x, _ in prepared:
        time_once(model, x)  # warm-up: allocator, oneDNN primitive cache
    times: list[list[float]] = [[] for _ in prepared]
    for _ in range(repeats):
        for (model, x, _), record in zip(prepared, times):
            record.append(time_once(model, x))
    rows = []
    for (_, _, row), record in zip(prepared, times):
        slices = row.pop("slices_per_input")
        row["ms_per_slice_median"] = round(statistics.median(record) / slices, 1)
        row["ms_per_slice_min"] = round(min(record) / slices, 1)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list_architectures(), choices=list_architectures())
    parser.add_argument("--size", type=int, default=256, help="slice height and width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"CPU, {args.threads} threads, torch {torch.__version__}, {args.size}x{args.size} slice, batch 1, "
          f"{args.repeats} interleaved rounds")
    rows = bench(args.arch, args.size, args.repeats)
    print(f"{'architecture':24s} {'params':>12s} {'MB':>7s} {'GMAC/slice':>10s} {'ms median':>10s} {'ms min':>8s}")
    for row in rows:
        print(f"{row['architecture']:24s} {row['params']:12,d} {row['megabytes']:7.1f} {row['gmac_per_slice']:10.2f} "
              f"{row['ms_per_slice_median']:10.1f} {row['ms_per_slice_min']:8.1f}")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
