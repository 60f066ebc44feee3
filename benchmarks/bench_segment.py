"""The `lungseg segment` pipeline benchmark: seconds per stage, peak memory and Dice, per case.

    python benchmarks/bench_segment.py                            # standard cases, default model, 3 repeats
    python benchmarks/bench_segment.py --repeats 1 --model runs/NAME/model/NAME.json
    python benchmarks/bench_segment.py --ct my_scan.nii.gz --cases ctchest4 --no-lungmask

Cases (``--cases``; a case whose data is missing is skipped and listed as such):

* ``lidc0002``: ``../shared/data/lidc/LIDC-IDRI-0002.nii.gz`` (512x512x261), the reference case;
* ``tall600``: a 512x512x600 CT made by linear interpolation of LIDC-IDRI-0002 along z (0.54 mm slices;
  without ../shared, a chest phantom resampled to that size), written uncompressed, so "read" is mostly disk;
* ``ctchest4``: the CTChest4 sample that slicerio ships, with Dice against its own right/left lung labels;
* ``--ct PATH``: any other CT.

Each run is a fresh process that calls ``segment_case`` (read -> lungs -> infection -> quantification ->
write labelmaps, .seg.nrrd, CASE.png report and CASE.json), as ``lungseg segment`` does for one input; the
stage seconds come from CASE.json, "process" is the whole process including Python start-up and imports,
and peak RSS is that process's own high-water mark (so it is per case). Medians over ``--repeats`` runs.
When the lung or infection model is a network, Dice against the classical method ('threshold') is printed
too, so a speed change that costs accuracy shows up.

The lungmask comparison times the R231 network of the `lungmask` package (the most used open lung model)
on LIDC-IDRI-0002 as lungmask runs it without post-processing: per-slice body crop and resize to 256x256,
batches of 20, argmax, resize back. Its weights cannot be downloaded here, so the network has untrained
weights (same architecture, so the same time); without the package installed, an equivalent of its U-Net
and preprocessing (below) is used. It runs once per benchmark (``--lungmask-slices N`` times N slices
and extrapolates, for quick checks).

Writes ``docs/benchmarks.md`` (tables plus the machine and the command) and ``benchmarks/results/pipeline.json``.
Timings are wall-clock: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
LIDC_0002 = SHARED / "lidc" / "LIDC-IDRI-0002.nii.gz"
TALL_SLICES = 600
STANDARD_CASES = ("lidc0002", "tall600", "ctchest4")
STAGES = ("read", "checks", "lungs", "infection", "quantification", "write_labelmaps", "write_segmentation",
          "write_report", "write", "total")
LUNGMASK_BATCH = 20  # lungmask's default batch size
LUNGMASK_REFERENCE_S = 265.0  # lungmask R231 on LIDC-IDRI-0002, same 2-core CPU, trained weights (issue)
GOALS = {"cpu_seconds": 20.0, "peak_gb_tall": 3.0, "gpu_seconds": 3.0}


# ----------------------------------------------------------------------------------------------------------
# child process: one timed segmentation
# ----------------------------------------------------------------------------------------------------------
def run_child(spec: dict) -> dict:
    """Segment ``spec['ct']`` once with the real pipeline; seconds, peak RSS and (optionally) Dice."""
    started = time.perf_counter()
    from lungseg_core.cli.segment import models_for_tasks
    from lungseg_core.inference.pipeline import segment_case

    lung_model, infection_model = models_for_tasks(spec["model"], None, None)
    imports = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="lungseg-bench-") as out:
        begun = time.perf_counter()
        outcome = segment_case(spec["ct"], out, lung_model=lung_model, infection_model=infection_model,
                               device=spec["device"], report=spec["report"])
        seconds = time.perf_counter() - begun
        peak_mb = peak_rss_mb()  # before any comparison below
        document = outcome.document
        result = {
            "seconds": document["seconds"], "segment_case": seconds, "imports": imports,
            "process": time.perf_counter() - spec["spawned"], "peak_rss_mb": peak_mb,
            "size_xyz": document["input"]["geometry"]["size_xyz"], "models": document["models"],
            "device": describe_device(spec["device"], document["models"]),
            "output_mb": {k: round(p.stat().st_size / 2**20, 2) for k, p in outcome.outputs.items()},
        }
        if spec["dice"]:
            result["dice"] = accuracy(spec, outcome.outputs, document["models"])
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own memory map; ru_maxrss would
    also count the parent's memory at fork time (Linux keeps it across exec)."""
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def describe_device(device: str, models: list[dict]) -> str:
    if all(m["architecture"] == "classical" for m in models):
        return "cpu (classical method, no network)"
    import torch

    from lungseg_core.inference.device import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(resolved)} (float16 autocast)"
    return f"{resolved.type} ({torch.get_num_threads()} threads)"


def accuracy(spec: dict, outputs: dict, models: list[dict]) -> dict:
    """Dice of the written labelmaps against the case's reference labels and against the classical method."""
    from lungseg_core.io import read_labelmap, read_volume
    from lungseg_core.metrics import dice

    produced = {task: read_volume(outputs[task]).array for task in ("lungs", "infection") if task in outputs}
    comparisons = {}
    if spec.get("reference"):
        reference = read_labelmap(spec["reference"], "lungs").array
        comparisons["reference labels"] = lung_dice(produced["lungs"], reference, dice)
    if any(m["architecture"] != "classical" for m in models):
        from lungseg_core.models.classical import classical_infection, classical_lungs

        volume = read_volume(spec["ct"])
        lungs = classical_lungs(volume)
        infection = classical_infection(volume, lungs)
        scores = lung_dice(produced["lungs"], lungs, dice)
        for name, label in (("ggo", 1), ("consolidation", 2)):
            scores[name] = round(float(dice(produced["infection"] == label, infection == label)), 4)
        comparisons["classical method"] = scores
    return comparisons


def lung_dice(pred: np.ndarray, ref: np.ndarray, dice) -> dict:
    return {"right": round(float(dice(pred == 1, ref == 1)), 4), "left": round(float(dice(pred == 2, ref == 2)), 4),
            "both": round(float(dice(pred > 0, ref > 0)), 4)}


# ----------------------------------------------------------------------------------------------------------
# child process: lungmask R231, untrained weights
# ----------------------------------------------------------------------------------------------------------
def r231_unet():
    """lungmask's R231 network: its ``UNet(n_classes=3, padding=True, depth=5, up_mode='upsample',
    batch_norm=True, residual=False)``, from the package when installed, else the same layers here."""
    try:
        from lungmask.resunet import UNet

        return UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False), "lungmask package"
    except ImportError:
        return _R231Equivalent(), "equivalent of lungmask.resunet.UNet (package not installed)"


def _conv_block(torch_nn, in_channels: int, out_channels: int):
    nn = torch_nn
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(out_channels),
                         nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(out_channels))


def _R231Equivalent():
    """Depth 5, 64..1024 channels, average pooling down, bilinear upsample + 1x1 conv up, log-softmax."""
    import torch
    from torch import nn

    class R231(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [64, 128, 256, 512, 1024]
            self.down = nn.ModuleList(_conv_block(nn, a, b) for a, b in zip([1] + widths[:-1], widths))
            self.up = nn.ModuleList(nn.Conv2d(b, a, 1) for a, b in zip(widths[-2::-1], widths[:0:-1]))
            self.up_blocks = nn.ModuleList(_conv_block(nn, 2 * a, a) for a in widths[-2::-1])
            self.last = nn.Conv2d(64, 3, 1)

        def forward(self, x):
            skips = []
            for i, block in enumerate(self.down):
                x = block(x)
                if i < len(self.down) - 1:
                    skips.append(x)
                    x = nn.functional.avg_pool2d(x, 2)
            for reduce, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
                x = reduce(nn.functional.interpolate(x, scale_factor=2, mode="bilinear"))
                x = block(torch.cat([x, skip], 1))
            return torch.log_softmax(self.last(x), dim=1)

    return R231()


def _lungmask_crop_and_resize(image: np.ndarray, width: int = 256, height: int = 256):
    """lungmask.utils.crop_and_resize: body mask on a 128x128 copy, crop to its box, resize (order 1)."""
    from scipy import ndimage
    from skimage import measure

    small = ndimage.zoom(image, 128 / np.asarray(image.shape), order=0)
    body = ndimage.binary_closing(small > -500)
    body = ndimage.binary_fill_holes(body, structure=np.ones((3, 3)))
    body = ndimage.binary_erosion(body, iterations=2)
    parts = measure.label(body.astype(int), connectivity=1)
    regions = measure.regionprops(parts)
    if regions:
        body = parts == np.argmax([r.area for r in regions]) + 1
        body = ndimage.binary_dilation(body, iterations=2)
    body = ndimage.zoom(body, np.asarray(image.shape) / 128, order=0)
    regions = measure.regionprops(measure.label(body))
    box = np.asarray(regions[0].bbox) if regions else np.array([0, 0, *body.shape])
    crop = image[box[0]:box[2], box[1]:box[3]]
    return ndimage.zoom(crop, np.asarray([width, height]) / np.asarray(crop.shape), order=1), box


def _lungmask_reshape(mask: np.ndarray, box, shape) -> np.ndarray:
    from scipy import ndimage

    out = np.zeros(shape)
    out[box[0]:box[2], box[1]:box[3]] = ndimage.zoom(mask, [box[2] - box[0], box[3] - box[1]] / np.asarray(mask.shape), order=0)
    return out


def run_lungmask_child(spec: dict) -> dict:
    """lungmask's inference without post-processing, timed per step, on ``spec['slices']`` slices (all if 0)."""
    import SimpleITK as sitk
    import torch

    try:
        from lungmask.utils import crop_and_resize, reshape_mask
    except ImportError:
        crop_and_resize, reshape_mask = _lungmask_crop_and_resize, _lungmask_reshape
    torch.manual_seed(0)
    network, source = r231_unet()
    network.eval()
    started = time.perf_counter()
    image = sitk.ReadImage(spec["ct"])
    if sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection()) != "LPS":
        image = sitk.DICOMOrient(image, "LPS")
    volume = sitk.GetArrayFromImage(image)
    read = time.perf_counter() - started
    total_slices = volume.shape[0]
    chosen = np.arange(total_slices)
    if 0 < spec["slices"] < total_slices:
        chosen = np.unique(np.linspace(0, total_slices - 1, spec["slices"]).round().astype(int))
    seconds = {"read": read}
    begun = time.perf_counter()
    prepared = [crop_and_resize(np.clip(volume[k], -1024, 600), 256, 256) for k in chosen]
    slices = np.asarray([p[0] for p in prepared])
    slices = (np.minimum(slices, 600) + 1024) / 1624
    seconds["preprocess"] = time.perf_counter() - begun
    begun = time.perf_counter()
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(slices), LUNGMASK_BATCH):
            batch = torch.as_tensor(slices[start:start + LUNGMASK_BATCH, None], dtype=torch.float32)
            predictions.append(torch.max(network(batch), 1)[1].numpy().astype(np.uint8))
    labels = np.concatenate(predictions)
    seconds["network"] = time.perf_counter() - begun
    begun = time.perf_counter()
    _ = [reshape_mask(labels[i], prepared[i][1], volume.shape[1:]) for i in range(len(chosen))]
    seconds["resize_back"] = time.perf_counter() - begun
    scale = total_slices / len(chosen)
    for step in ("preprocess", "network", "resize_back"):
        seconds[step] *= scale  # per-slice work, extrapolated when only some slices ran
    seconds["total"] = sum(seconds.values())
    return {"seconds": seconds, "slices_run": int(len(chosen)), "slices": int(total_slices), "source": source,
            "threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb(),
            "extrapolated": bool(len(chosen) < total_slices)}


# ----------------------------------------------------------------------------------------------------------
# parent: cases, runs, tables
# ----------------------------------------------------------------------------------------------------------
def spawn(mode: str, spec: dict) -> dict:
    """Run one child in a fresh interpreter and return the JSON it prints last."""
    spec = dict(spec, spawned=None)
    command = [sys.executable, str(Path(__file__).resolve()), mode, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_tall_ct(folder: Path) -> tuple[Path, str]:
    """A 512x512x600 int16 CT: LIDC-IDRI-0002 linearly interpolated along z, else a resampled phantom."""
    from lungseg_core.io import read_volume
    from lungseg_core.io.volume import Volume

    if LIDC_0002.exists():
        source = read_volume(LIDC_0002)
        depth = source.shape[0]
        position = np.linspace(0, depth - 1, TALL_SLICES)
        tall = np.empty((TALL_SLICES,) + source.shape[1:], np.int16)
        for k, z in enumerate(position):
            low = min(int(z), depth - 2)
            weight = np.float32(z - low)
            mixed = (1 - weight) * source.array[low].astype(np.float32) + weight * source.array[low + 1]
            tall[k] = np.round(mixed)
        spacing = (*source.spacing[:2], source.spacing[2] * (depth - 1) / (TALL_SLICES - 1))
        volume = Volume(tall, spacing, source.origin, source.direction, name="tall600")
        origin = f"LIDC-IDRI-0002 interpolated to {TALL_SLICES} slices ({spacing[2]:.2f} mm)"
    else:
        from scipy import ndimage

        from lungseg_core.synthetic import make_chest_phantom

        small = make_chest_phantom(shape=(TALL_SLICES // 4, 128, 128), spacing=(2.8, 2.8, 1.6)).ct
        tall = ndimage.zoom(small.array, 4, order=1, output=np.int16)
        volume = Volume(tall, (0.7, 0.7, 0.4), name="tall600")
        origin = f"chest phantom resampled to 512x512x{TALL_SLICES} (../shared absent)"
    path = folder / "tall600.nii"
    import SimpleITK as sitk

    sitk.WriteImage(volume.to_sitk(), str(path), useCompression=False)
    return path, origin


def collect_cases(args, folder: Path) -> tuple[list[dict], list[str]]:
    cases, skipped = [], []
    for name in args.cases:
        if name == "lidc0002":
            if LIDC_0002.exists():
                cases.append({"name": "LIDC-IDRI-0002", "ct": str(LIDC_0002), "origin": "../shared/data/lidc"})
            else:
                skipped.append("LIDC-IDRI-0002 (../shared/data/lidc absent)")
        elif name == "tall600":
            path, origin = make_tall_ct(folder)
            cases.append({"name": f"synthetic 512x512x{TALL_SLICES}", "ct": str(path), "origin": origin})
        elif name == "ctchest4":
            try:
                import slicerio
            except ImportError:
                skipped.append("CTChest4 (slicerio not installed)")
                continue
            cases.append({"name": "CTChest4", "ct": slicerio.get_testdata_file("CTChest4.nrrd"), "origin": "slicerio",
                          "reference": slicerio.get_testdata_file("Segmentation.seg.nrrd")})
        else:
            raise SystemExit(f"unknown case '{name}': use {', '.join(STANDARD_CASES)}")
    for path in args.ct:
        cases.append({"name": path.name, "ct": str(path.resolve()), "origin": "--ct"})
    return cases, skipped


def time_case(case: dict, args) -> dict:
    runs = []
    for repeat in range(args.repeats):
        spec = {"ct": case["ct"], "model": args.model, "device": args.device, "report": args.report,
                "reference": case.get("reference"), "dice": repeat == 0}
        runs.append(spawn("--child", spec))
        seconds = runs[-1]["seconds"]
        print(f"  {case['name']} run {repeat + 1}/{args.repeats}: total {seconds['total']:.2f} s, "
              f"process {runs[-1]['process']:.2f} s, peak {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    medians = {stage: statistics.median(r["seconds"][stage] for r in runs) for stage in STAGES if stage in runs[0]["seconds"]}
    for key in ("process", "imports", "peak_rss_mb"):
        medians[key] = statistics.median(r[key] for r in runs)
    return {**case, "runs": runs, "median": medians, "dice": runs[0].get("dice", {}), "device": runs[0]["device"],
            "size_xyz": runs[0]["size_xyz"], "models": runs[0]["models"], "output_mb": runs[0]["output_mb"]}


def machine_description() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()], "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name"))
        memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal"))
        info["ram_gib"] = round(memory_kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    import scipy
    import SimpleITK

    from lungseg_core import __version__

    info.update(numpy=np.__version__, scipy=scipy.__version__, simpleitk=SimpleITK.Version_VersionString(),
                lungseg=__version__)
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"], info["gpu"] = None, None
    try:
        import vtkmodules

        info["vtk"] = vtkmodules.__version__
    except (ImportError, AttributeError):
        info["vtk"] = None
    return info


# ----------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------
def _s(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(results: dict) -> str:
    machine, args = results["machine"], results["arguments"]
    lines = ["# Pipeline benchmark", "",
             f"Produced by `{results['command']}` on {results['date_utc']} (UTC); raw numbers in "
             f"`{results['json']}`. Rerun it on a quiet machine: it measures wall-clock time.", "",
             "## Machine", "", "| | |", "|---|---|",
             f"| CPU | {machine['cpu']} |",
             f"| cores | {machine['cores']} ({machine['usable_cores']} usable) |",
             f"| RAM | {machine.get('ram_gib', '?')} GiB |",
             f"| load average at start (1, 5, 15 min) | {', '.join(map(str, machine['load_average_at_start']))} |",
             f"| GPU | {machine['gpu'] or 'none'} |",
             f"| software | Python {machine['python']}, torch {machine['torch']}, numpy {machine['numpy']}, scipy "
             f"{machine['scipy']}, SimpleITK {machine['simpleitk']}, VTK {machine['vtk']}, lungseg {machine['lungseg']} |",
             f"| platform | {machine['platform']} |", ""]
    if machine["load_average_at_start"][0] > 0.5 * machine["usable_cores"]:
        lines += [f"**The machine was busy when this ran** (load {machine['load_average_at_start'][0]} on "
                  f"{machine['usable_cores']} cores): every time below is pessimistic; rerun on a quiet machine.", ""]
    lines += ["## Seconds per stage", "",
              f"Median of {args['repeats']} run(s), each a fresh process running `segment_case` (model "
              f"`{args['model']}`, task all, report {'on' if args['report'] else 'off'}). *process* is the whole "
              "`lungseg segment`-like process (Python start-up and imports included); *total* is what CASE.json "
              "reports. Medians are per column, so they need not add up.", "",
              "| case | size (x, y, z) | device | read | checks | lungs | infection | quantification | labelmaps "
              "| .seg.nrrd | report | write | total | process | peak RSS |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        m = case["median"]
        size = "x".join(map(str, case["size_xyz"]))
        cells = [_s(m.get(k)) for k in ("read", "checks", "lungs", "infection", "quantification", "write_labelmaps",
                                        "write_segmentation", "write_report", "write", "total", "process")]
        lines.append(f"| {case['name']} | {size} | {case['device']} | " + " | ".join(cells) + f" | {m['peak_rss_mb']:.0f} MB |")
    lines += [""] + [f"* {case['name']}: {case['origin']}; outputs " + ", ".join(f"{k} {v} MB" for k, v in case["output_mb"].items())
                     for case in results["cases"]]
    lines += [f"* skipped: {s}" for s in results["skipped"]]
    lines += ["", "## Accuracy (Dice)", ""]
    rows = [(case["name"], name, scores) for case in results["cases"] for name, scores in case["dice"].items()]
    if rows:
        lines += ["| case | against | right lung | left lung | both lungs | GGO | consolidation |", "|---|---|---|---|---|---|---|"]
        for name, against, scores in rows:
            cells = [scores.get(k) for k in ("right", "left", "both", "ggo", "consolidation")]
            lines.append(f"| {name} | {against} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    else:
        lines.append("No reference labels among the cases (CTChest4 carries them).")
    lines += ["", "The classical comparison appears when the lung or infection model is a network.", ""]
    lines += lungmask_markdown(results)
    lines += goals_markdown(results)
    return "\n".join(lines) + "\n"


def lungmask_markdown(results: dict) -> list[str]:
    lines = ["## lungmask comparison", ""]
    lungmask = results.get("lungmask")
    if not lungmask:
        return lines + [results.get("lungmask_note", "Not run."), ""]
    s = lungmask["seconds"]
    ours = next((c for c in results["cases"] if c["name"] == "LIDC-IDRI-0002"), None)
    how = (f"extrapolated from {lungmask['slices_run']} of {lungmask['slices']} slices" if lungmask["extrapolated"]
           else f"all {lungmask['slices']} slices")
    lines += [f"lungmask R231 architecture, untrained weights ({lungmask['source']}), on LIDC-IDRI-0002, as lungmask "
              f"runs it without post-processing, {lungmask['threads']} torch threads, {how}:", "",
              "| read | preprocess | network | resize back | total | peak RSS |", "|---|---|---|---|---|---|",
              f"| {_s(s['read'])} | {_s(s['preprocess'])} | {_s(s['network'])} | {_s(s['resize_back'])} | "
              f"{_s(s['total'])} | {lungmask['peak_rss_mb']:.0f} MB |", ""]
    if ours:
        lines.append(f"LungSegAI, lungs and infection with every output: {ours['median']['process']:.1f} s per process "
                     f"({ours['median']['total']:.1f} s in CASE.json), {s['total'] / ours['median']['process']:.0f}x "
                     f"faster than lungmask's lungs alone. The issue quotes about {LUNGMASK_REFERENCE_S:.0f} s for "
                     "lungmask with its trained weights on the same 2-core CPU.")
    return lines + [""]


def goals_markdown(results: dict) -> list[str]:
    by_name = {c["name"]: c for c in results["cases"]}
    lidc = by_name.get("LIDC-IDRI-0002")
    tall = next((c for c in results["cases"] if c["name"].startswith("synthetic")), None)
    on_gpu = [c for c in results["cases"] if c["device"].startswith("cuda")]
    rows = ["## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    if lidc:
        seconds = lidc["median"]["process"]
        rows.append(f"| lungs + infection + outputs, LIDC-IDRI-0002, <= {GOALS['cpu_seconds']:.0f} s on 2 CPU cores "
                    f"(model `{results['arguments']['model']}`) | "
                    f"{seconds:.1f} s process ({lidc['median']['total']:.1f} s pipeline) on {results['machine']['usable_cores']} "
                    f"cores, {lidc['device']} | {'yes' if seconds <= GOALS['cpu_seconds'] else 'no'} |")
    if tall:
        gb = tall["median"]["peak_rss_mb"] / 1024
        rows.append(f"| peak memory 512x512x600 <= {GOALS['peak_gb_tall']:.0f} GB | {gb:.2f} GB | "
                    f"{'yes' if gb <= GOALS['peak_gb_tall'] else 'no'} |")
    if on_gpu:
        case = on_gpu[0]
        rows.append(f"| <= {GOALS['gpu_seconds']:.0f} s on one GPU | {case['median']['total']:.2f} s ({case['name']}) | "
                    f"{'yes' if case['median']['total'] <= GOALS['gpu_seconds'] else 'no'} |")
    else:
        rows.append(f"| <= {GOALS['gpu_seconds']:.0f} s on one GPU | not measured: no GPU on this machine | – |")
    rows += ["", "GPU path (networks): the device is chosen automatically (`--device auto`: CUDA, then MPS, then CPU), "
             "inference runs under float16 autocast on CUDA, and slices go to the device in batches (not one by one) "
             "with only the low-resolution probabilities coming back. The classical method runs on the CPU."]
    return rows + [""]


# ----------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the median is reported (default 3)")
    parser.add_argument("--model", default="default", metavar="NAME_OR_PATH",
                        help="as `lungseg segment --model`: 'default', 'threshold' or a model name/path")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--cases", nargs="*", default=list(STANDARD_CASES), help=f"of {', '.join(STANDARD_CASES)}")
    parser.add_argument("--ct", type=Path, action="append", default=[], help="another CT to time (repeatable)")
    parser.add_argument("--no-report", dest="report", action="store_false", help="skip CASE.png, as `--no-report`")
    parser.add_argument("--no-lungmask", dest="lungmask", action="store_false", help="skip the lungmask comparison")
    parser.add_argument("--lungmask-slices", type=int, default=0,
                        help="time lungmask on this many evenly spaced slices and extrapolate (default: all)")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline.json")
    return parser.parse_args(argv)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] in ("--child", "--lungmask-child"):
        spec = json.loads(sys.argv[2])
        spec["spawned"] = time.perf_counter() - _interpreter_seconds()
        result = run_child(spec) if sys.argv[1] == "--child" else run_lungmask_child(spec)
        print(json.dumps(result))
        return 0
    args = parse_args()
    machine = machine_description()
    results = {"command": "python benchmarks/bench_segment.py " + " ".join(sys.argv[1:]),
               "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
               "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "ct"},
               "cases": [], "skipped": []}
    with tempfile.TemporaryDirectory(prefix="lungseg-bench-cases-") as folder:
        cases, results["skipped"] = collect_cases(args, Path(folder))
        for case in cases:
            print(f"{case['name']} ({case['origin']})", flush=True)
            results["cases"].append(time_case(case, args))
    if args.lungmask and LIDC_0002.exists():
        print("lungmask R231 architecture, untrained weights, on LIDC-IDRI-0002", flush=True)
        try:
            results["lungmask"] = spawn("--lungmask-child", {"ct": str(LIDC_0002), "slices": args.lungmask_slices})
            print(f"  total {results['lungmask']['seconds']['total']:.1f} s", flush=True)
        except RuntimeError as exc:  # keep the pipeline numbers
            results["lungmask_note"] = f"Failed: {str(exc).splitlines()[-1]}"
            print(results["lungmask_note"], flush=True)
    else:
        results["lungmask_note"] = "Not run (--no-lungmask)." if not args.lungmask else "Not run: LIDC-IDRI-0002 is absent."
    write_outputs(results, args)
    return 0


def _interpreter_seconds() -> float:
    """Seconds since this process started (so 'process' includes interpreter start-up)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def write_outputs(results: dict, args) -> None:
    from lungseg_core.io import write_text_atomic

    json_path = args.json.resolve()
    results["json"] = str(json_path.relative_to(ROOT)) if json_path.is_relative_to(ROOT) else str(json_path)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.markdown, markdown(results))
    print(f"wrote {args.markdown} and {args.json}")


if __name__ == "__main__":
    sys.exit(main())
