"""The training loop: data -> model -> checkpoints, logs, curves and a model package.

Runs the same on a 2-core CPU, one GPU (mixed precision) or many GPUs/nodes under ``torchrun``
(DistributedDataParallel; gloo on CPU, nccl on GPU). Only rank 0 writes files. A run folder holds:

    config.json              the validated config as trained
    log.csv                  one row per epoch (losses, Dice per class, learning rate, seconds)
    curves.png               loss and Dice curves
    checkpoints/last.pt      everything needed to resume (model, optimiser, scheduler, epoch, RNG states)
    checkpoints/best.pt      the best weights by the monitored metric
    model/NAME.json + .safetensors   the best model as a package (lungseg_core.models.zoo)
    summary.json
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from lungseg_core.errors import InputError, ModelError
from lungseg_core.io.atomic import atomic_path, write_text_atomic
from lungseg_core.labels import INFECTION_LABELS, LUNG_LABELS, label_column
from lungseg_core.text import shown_list
from lungseg_core.training.config import TrainConfig
from lungseg_core.training.losses import build_loss
from lungseg_core.training.sampling import SliceDataset, TrainingData, build_training_data
from lungseg_core.training.stop import StopRequest

CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------------------------------------
# distributed set-up (torchrun environment variables)
# ------------------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if device_kind == "cuda" and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(rank, world, local_rank, True)


def _all_reduce(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def choose_device(requested: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` -> CUDA when available (one GPU per local rank under torchrun), else CPU."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("A CUDA GPU was requested but none is available to PyTorch", "use --device cpu or auto")
        if requested == "cuda" and info is not None and info.enabled:
            requested = f"cuda:{info.local_rank}"
        device = torch.device(requested)
        if device.index is None:  # newer torch refuses set_device("cuda") without an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        return device
    if requested not in ("cpu", "mps"):
        raise ModelError(f"Unknown device '{requested}'", "use auto, cpu or cuda")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """RNG states as tensors/lists only, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------------
# model, optimiser, scheduler
# ------------------------------------------------------------------------------------------------------
def build_network(config: TrainConfig, encoder_weights: bool = True) -> torch.nn.Module:
    """The config's network; ``encoder_weights=False`` skips reading the encoder's ImageNet checkpoint, for a
    network whose weights are loaded next anyway."""
    from lungseg_core.models.registry import build_model, network_kwargs

    options = config.architecture_kwargs if encoder_weights else network_kwargs(config.architecture_kwargs)
    return build_model(config.architecture, in_channels=config.in_channels, num_classes=config.num_classes, **options)


def init_weights_card(config: TrainConfig) -> dict:
    """The card of the model ``config.init_weights`` names, refused unless its network is the config's."""
    from lungseg_core.models import zoo
    from lungseg_core.models.registry import network_kwargs

    card = {"architecture_kwargs": {}, **zoo.resolve_card(config.init_weights, config.task)}
    card["architecture_kwargs"] = network_kwargs(card["architecture_kwargs"])
    wanted = {"architecture": config.architecture, "architecture_kwargs": network_kwargs(config.architecture_kwargs)}
    if card.get("in_channels", 1) != 1:  # a 2D (one-channel) model can start a 2.5D one: initial_weights inflates it
        wanted["in_channels"] = config.in_channels
    differs = [key for key, value in wanted.items() if card.get(key) != value]
    if differs:  # the classical method's card differs in architecture too
        raise InputError(
            f"Cannot fine-tune from '{config.init_weights}': its {', '.join(differs)} differ(s) from the config's",
            "set architecture, architecture_kwargs and slice_spec.context as in that model's card",
        )
    return card


def initial_weights(config: TrainConfig, model: torch.nn.Module) -> tuple[dict, list[str]]:
    """The SHA-checked weights of the model ``config.init_weights`` names, if its network matches the config's,
    and the names of the tensors left as initialised: with another ``num_classes`` (a lung model as the start of
    an infection model) the layers whose shapes depend on it (the output layer) start afresh."""
    from lungseg_core.models import zoo

    card = init_weights_card(config)
    weights = zoo.load_state_dict(card)
    own = model.state_dict()
    if card.get("in_channels", 1) != config.in_channels:
        weights = inflate_input_channels(weights, own, config.in_channels)
    if card.get("num_classes") == config.num_classes:
        return weights, []
    fresh = sorted(name for name, tensor in own.items() if name not in weights or weights[name].shape != tensor.shape)
    return {**own, **{name: tensor for name, tensor in weights.items() if name not in fresh}}, fresh


def inflate_input_channels(weights: dict, own: dict, in_channels: int) -> dict:
    """A one-channel (2D) model's weights for a network of ``in_channels`` = 2*context+1 (2.5D): each tensor that
    reads the input gets the 2D weights on the centre slice's channel and zeros on the neighbours', so the
    2.5D network starts out computing exactly what the 2D one did and fine-tuning learns what the neighbours add."""
    inflated = dict(weights)
    for name, tensor in weights.items():
        if tensor.ndim < 2 or tensor.shape[1] != 1 or name not in own:
            continue
        if tuple(own[name].shape) == (tensor.shape[0], in_channels, *tensor.shape[2:]):  # a layer reading the input
            inflated[name] = torch.zeros_like(own[name], dtype=tensor.dtype)
            inflated[name][:, in_channels // 2] = tensor[:, 0]
    return inflated


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=False)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    kwargs = dict(config.scheduler_kwargs)
    try:
        if config.scheduler == "plateau":
            mode = "min" if config.monitor == "val_loss" else "max"
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, **kwargs)
        if config.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=kwargs.pop("T_max", config.epochs), **kwargs)
    except TypeError as exc:
        raise InputError(f"Bad scheduler_kwargs for '{config.scheduler}': {exc}", "fix scheduler_kwargs in the config") from None
    return None


def label_names(task: str, num_classes: int) -> dict[str, str]:
    """Model-card labels: sides / GGO-consolidation with 3 classes, one foreground label with 2."""
    if num_classes == 2:
        return {"1": "Lung" if task == "lungs" else "Infection"}
    names = LUNG_LABELS if task == "lungs" else INFECTION_LABELS
    return {str(k): v for k, v in names.items() if k < num_classes}


def hardware_description(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    prefix = f"{world_size} x " if world_size > 1 else ""
    return f"{prefix}{what}; torch {torch.__version__}; {platform.system()} {platform.release()}"


# ------------------------------------------------------------------------------------------------------
# one epoch
# ------------------------------------------------------------------------------------------------------
def _loader(dataset, batch_size: int, shuffle: bool, seed: int, epoch: int, info: DistInfo, workers: int,
            pin: bool) -> DataLoader:
    sampler = None
    generator = None
    if shuffle and info.enabled:
        sampler = torch.utils.data.distributed.DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed, drop_last=False
        )
        sampler.set_epoch(epoch)
    elif shuffle:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)  # same order when resumed
    per_rank = len(dataset) // max(info.world_size, 1)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=generator, num_workers=workers, pin_memory=pin,
                      drop_last=shuffle and per_rank > batch_size)  # no 1-slice batches through BatchNorm


def train_one_epoch(model, loader, loss_fn, optimizer, scaler, device, amp: bool, grad_clip: float,
                    stop: Callable[[], bool] = lambda: False) -> tuple[float, int]:
    """Sums (loss*n, n) over the loader; ``stop()`` is asked after every batch (before the next is fetched), so a
    Ctrl-C ends the epoch at a batch boundary (the caller then drops the unfinished epoch)."""
    model.train()
    total, count = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = model(images)
        loss = loss_fn(logits.float(), labels)
        if not torch.isfinite(loss):
            raise ModelError(f"The training loss became {loss.item()} (diverged)", "lower the learning rate ('lr')")
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.item()) * images.shape[0]
        count += images.shape[0]
        if stop():
            break
    return total, count


@torch.no_grad()
def evaluate(model, loader, loss_fn, device, num_classes: int, amp: bool,
             stop: Callable[[], bool] = lambda: False) -> list[float]:
    """Sums [loss*n, n, tp_1.., tp_any, fp_1.., fp_any, fn_1.., fn_any] over the loader (reduced across ranks
    by the caller); "any" is all foreground classes together. ``stop()`` ends it early (a local check: ranks hold
    different numbers of validation batches, so no collective can run per batch here)."""
    model.eval()
    loss_sum, count = 0.0, 0
    tp = torch.zeros(num_classes, dtype=torch.float64)
    fp, fn = tp.clone(), tp.clone()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = model(images)
        loss_sum += float(loss_fn(logits.float(), labels).item()) * images.shape[0]
        count += images.shape[0]
        pred = logits.argmax(1)
        regions = [(pred == c, labels == c) for c in range(1, num_classes)] + [(pred > 0, labels > 0)]
        for i, (p, r) in enumerate(regions):
            tp[i] += (p & r).sum().item()
            fp[i] += (p & ~r).sum().item()
            fn[i] += (~p & r).sum().item()
        if stop():
            break
    return [loss_sum, float(count), *tp.tolist(), *fp.tolist(), *fn.tolist()]


def _dice_from_sums(sums: list[float], num_classes: int) -> tuple[list[float], float]:
    """(Dice of each foreground class, Dice of all foreground together) from :func:`evaluate`'s sums."""
    k = num_classes  # the foreground classes and "any"
    tp, fp, fn = sums[2:2 + k], sums[2 + k:2 + 2 * k], sums[2 + 2 * k:2 + 3 * k]
    # a class absent from prediction and reference counts as perfect (nothing to find, nothing found)
    dices = [1.0 if t + p + n == 0 else 2 * t / (2 * t + p + n) for t, p, n in zip(tp, fp, fn)]
    return dices[:-1], dices[-1]


# ------------------------------------------------------------------------------------------------------
# run-folder outputs
# ------------------------------------------------------------------------------------------------------
def write_log_csv(path: Path, history: list[dict]) -> None:
    columns = list(history[0])
    for row in history[1:]:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buffer.getvalue())


def plot_curves(path: Path, history: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    ax_loss.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    dice_columns = [c for c in history[0] if c.startswith("val_dice")]
    for column in dice_columns:
        ax_dice.plot(epochs, [row[column] for row in history], "o-", label=column.replace("val_", ""))
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="Validation Dice", ylim=(0, 1))
    ax_dice.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise InputError(f"Cannot read checkpoint '{path}' ({exc.__class__.__name__})", "start a fresh run without --resume") from None


# ------------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_value: float
    stopped_early: bool
    package: Path | None
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C / SIGINT; the package holds the best epoch finished before


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _improved(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if monitor == "val_loss" else value > best + min_delta


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    device: str = "auto",
    epochs: int | None = None,
    command: str = "",
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train ``config`` into ``run_dir``; ``resume`` continues from ``run_dir/checkpoints/last.pt``.

    ``epochs`` overrides the config's total number of epochs (e.g. to extend a finished run). It becomes the
    config's ``epochs``, so the run's config.json and card record it and a cosine schedule of a new run spans
    it; a resumed run keeps the schedule saved in its checkpoint.
    """
    if epochs is not None:
        config = replace(config, epochs=int(epochs))
    run_dir = Path(run_dir)
    requested = (device or "auto").lower()
    kind = "cuda" if requested.startswith("cuda") or (requested == "auto" and torch.cuda.is_available()) else "cpu"
    info = init_distributed(kind)
    say = (log if info.is_main and log is not None else (lambda _msg: None))
    try:
        return _train(config, run_dir, resume, choose_device(requested, info), command, info, say)
    finally:
        if info.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Parts:
    """What one run trains with: the network (DDP-wrapped under torchrun) and its optimiser state."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    loss_fn: Callable
    amp: bool


def _train(config, run_dir, resume, device, command, info: DistInfo, say) -> TrainResult:
    last_path = run_dir / "checkpoints" / "last.pt"
    if info.is_main:
        _check_run_dir(run_dir, resume, last_path)
    # checked before the data load: a refused resume should not cost minutes of reading CTs first
    checkpoint = load_checkpoint(last_path) if resume else None
    if checkpoint is not None:
        _check_resumable(checkpoint, config, last_path, run_dir, say)
    elif config.init_weights:
        init_weights_card(config)  # a wrong model to fine-tune from, too, is refused before the data load
    missing_sources = config.missing_optional_sources()
    seed_everything(config.seed + info.rank)
    data = _load_data(config, say)
    if checkpoint is not None:
        _check_same_cases(checkpoint, data, last_path)
    parts = _build_parts(config, device, info, resume, say)
    state = {"epoch": 0, "best_value": None, "best_epoch": 0, "bad_epochs": 0, "history": [], "seconds": 0.0}
    if checkpoint is not None:
        _restore(parts, checkpoint, state, info)
        say(f"resumed from epoch {state['epoch']} ({last_path})")
    if info.is_main:  # roots saved absolute: resuming with this file reads the data the run read (see config.py)
        write_text_atomic(run_dir / "config.json", json.dumps(_saved_config(config), indent=2) + "\n")
    extra = {"cases": {"train": data.train_cases, "val": data.val_cases}, "missing_sources": missing_sources}
    with StopRequest(info.enabled, device) as stop:
        ending = _run_epochs(config, run_dir, data, parts, state, extra, device, info, stop, say)
        interrupted = ending == "interrupted"
        if interrupted:
            say(f"interrupted during epoch {state['epoch'] + 1}: packaging the best checkpoint so far")
        package = _finish(config, run_dir, data, state, command, device, info, ending, say) if info.is_main else None
    if info.enabled:  # every rank agreed on the stop (StopRequest.agreed), so every rank reaches the barrier
        dist.barrier()
    return TrainResult(run_dir, state["epoch"], state["best_epoch"], state["best_value"], ending == "early", package,
                       state["history"], interrupted)


def _load_data(config: TrainConfig, say) -> TrainingData:
    started = time.perf_counter()
    data = build_training_data(config, say)
    say(f"data: {len(data.train)} training / {len(data.val)} validation slices "
        f"({len(data.train_cases)} / {len(data.val_cases)} cases) in {time.perf_counter() - started:.1f} s")
    return data


def _build_parts(config: TrainConfig, device: torch.device, info: DistInfo, resume: bool, say) -> _Parts:
    # The ImageNet checkpoint is read only when it is the start: a resume (last.pt) and a fine-tune (the
    # init_weights model, whose encoder is the same network) replace the encoder right after.
    model = build_network(config, encoder_weights=not resume and not config.init_weights).to(device)
    if config.init_weights and not resume:  # a resume takes its weights from last.pt instead
        weights, fresh = initial_weights(config, model)
        model.load_state_dict(weights)
        say(f"fine-tuning from {config.init_weights}" + (f" (started afresh: {', '.join(fresh)})" if fresh else ""))
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(config, model.parameters())
    amp = bool(config.amp and device.type == "cuda")
    return _Parts(model, optimizer, build_scheduler(config, optimizer), torch.amp.GradScaler("cuda", enabled=amp),
                  build_loss(config.loss, **config.loss_kwargs), amp)


def _restore(parts: _Parts, checkpoint: dict, state: dict, info: DistInfo) -> None:
    _unwrap(parts.model).load_state_dict(checkpoint["model"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    if parts.scheduler is not None and checkpoint.get("scheduler") is not None:
        parts.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):
        parts.scaler.load_state_dict(checkpoint["scaler"])
    state.update({k: checkpoint[k] for k in state})
    _set_rng_state(checkpoint["rng"][info.rank] if isinstance(checkpoint["rng"], list) else checkpoint["rng"])


def _saved_config(config: TrainConfig) -> dict:
    """The config as a run saves it (config.json, last.pt): data roots absolute."""
    return config.with_resolved_roots().to_dict()


def _run_epochs(config, run_dir, data, parts: _Parts, state: dict, extra: dict, device, info: DistInfo,
                stop: StopRequest, say) -> str:
    """Train the remaining epochs; returns how the loop ended: "finished", "early" (early stopping) or
    "interrupted" (a stop request, honoured at a batch boundary or once an epoch's files are all written)."""
    train_ds = SliceDataset(data.train, config.augmentation, seed=config.seed)
    val_ds = Subset(SliceDataset(data.val), range(info.rank, len(data.val), info.world_size))
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        tic = time.perf_counter()
        row = _run_epoch(config, parts, train_ds, val_ds, epoch, device, info, stop)
        if row is None:  # stopped mid-epoch: the epoch is dropped, the files still hold the one before
            return "interrupted"
        row["seconds"] = round(time.perf_counter() - tic, 3)
        improved = _record_epoch(config, run_dir, parts, state, row, extra, info)
        say(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
            f"val Dice {row['val_dice']:.4f}" + (f" (any {row['val_dice_any']:.4f})" if config.num_classes > 2 else "")
            + f", lr {row['lr']:.2e}, {row['seconds']:.1f} s" + (" *best*" if improved else ""))
        if config.early_stopping_patience and state["bad_epochs"] >= config.early_stopping_patience:
            say(f"early stopping: no improvement of {config.monitor} for {state['bad_epochs']} epochs")
            return "early"
        if epoch < config.epochs and stop.agreed():  # after the last epoch a stop changes nothing
            return "interrupted"
    return "finished"


def _run_epoch(config, parts: _Parts, train_ds, val_ds, epoch: int, device, info: DistInfo,
               stop: StopRequest) -> dict | None:
    """Train and validate one epoch: its log row (``seconds`` left to the caller), or None when stopped."""
    pin = device.type == "cuda"
    train_ds.set_epoch(epoch)
    loader = _loader(train_ds, config.batch_size, True, config.seed, epoch, info, config.num_workers, pin)
    train_sum, train_count = _all_reduce(list(train_one_epoch(
        parts.model, loader, parts.loss_fn, parts.optimizer, parts.scaler, device, parts.amp, config.grad_clip,
        stop.agreed)), info, device)
    if stop.agreed():
        return None
    val_loader = _loader(val_ds, config.batch_size, False, config.seed, epoch, info, config.num_workers, pin)
    sums = _all_reduce(evaluate(parts.model, val_loader, parts.loss_fn, device, config.num_classes, parts.amp,
                                lambda: stop.requested), info, device)
    if stop.agreed():  # validation cut short: its scores would not be the epoch's
        return None
    dices, dice_any = _dice_from_sums(sums, config.num_classes)
    names = label_names(config.task, config.num_classes).values()
    return {
        "epoch": epoch,
        "train_loss": train_sum / max(train_count, 1),
        "val_loss": sums[0] / max(sums[1], 1),
        "val_dice": float(np.mean(dices)),
        "val_dice_any": dice_any,
        **{f"val_dice_{label_column(name)}": d for name, d in zip(names, dices)},
        "lr": parts.optimizer.param_groups[0]["lr"],
        "seconds": 0.0,
    }


def _record_epoch(config, run_dir: Path, parts: _Parts, state: dict, row: dict, extra: dict, info: DistInfo) -> bool:
    """Step the schedule, update ``state`` with the epoch and write best.pt, last.pt, log.csv and curves.png;
    whether the epoch is the best so far. Runs with stop signals held back (StopRequest), so the files and
    ``state`` always name the same epochs."""
    monitored = row[config.monitor]
    if parts.scheduler is not None:
        parts.scheduler.step(monitored) if config.scheduler == "plateau" else parts.scheduler.step()
    improved = _improved(monitored, state["best_value"], config.monitor, config.min_delta)
    if improved:
        state.update(best_value=monitored, best_epoch=row["epoch"], bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    row["best"] = int(improved)
    state["seconds"] += row["seconds"]
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    rng = _gather_rng(info)  # a collective under torchrun: every rank calls it
    if info.is_main:
        _save_checkpoints(config, run_dir, parts, state, rng, extra, improved, monitored)
        write_log_csv(run_dir / "log.csv", state["history"])
        plot_curves(run_dir / "curves.png", state["history"], config.name)
    return improved


def _save_checkpoints(config, run_dir: Path, parts: _Parts, state: dict, rng, extra: dict, improved: bool,
                      monitored: float) -> None:
    weights = {k: v.detach().cpu() for k, v in _unwrap(parts.model).state_dict().items()}
    if improved:
        _save_checkpoint(run_dir / "checkpoints" / "best.pt",
                         {"model": weights, "epoch": state["epoch"], "value": monitored, "monitor": config.monitor})
    _save_checkpoint(run_dir / "checkpoints" / "last.pt", {
        "version": CHECKPOINT_VERSION, "model": weights, "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        "scaler": parts.scaler.state_dict() if parts.amp else None, "rng": rng, "config": _saved_config(config),
        **extra, **state,
    })


def _finish(config, run_dir: Path, data: TrainingData, state: dict, command: str, device, info: DistInfo,
            ending: str, say) -> Path | None:
    """Package the best epoch and write summary.json (rank 0); the package path, None before any epoch ended."""
    package = _write_package(config, run_dir, run_dir / "checkpoints" / "best.pt", data, state, command, device, info)
    summary = {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"], "monitor": config.monitor,
               "best_value": state["best_value"], "stopped_early": ending == "early",
               "interrupted": ending == "interrupted", "seconds": state["seconds"],
               "package": str(package) if package else None, "train_cases": data.train_cases,
               "val_cases": data.val_cases, "notes": data.notes}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if package is not None:
        say(f"best epoch {state['best_epoch']} ({config.monitor} {state['best_value']:.4f}); model package: {package}")
    return package


def _gather_rng(info: DistInfo):
    """Every rank's RNG state (rank 0 saves them all; on resume each rank takes its own)."""
    state = _rng_state()
    if not info.enabled:
        return state
    states: list = [None] * info.world_size
    dist.all_gather_object(states, state)
    return states


def _check_run_dir(run_dir: Path, resume: bool, last_path: Path) -> None:
    if resume and not last_path.exists():
        raise InputError(f"Nothing to resume: '{last_path}' does not exist", "run without --resume to start training")
    if not resume and last_path.exists():
        raise InputError(f"Run folder '{run_dir}' already holds a training run",
                         "add --resume to continue it, or choose another folder with -o")
    run_dir.mkdir(parents=True, exist_ok=True)


# a resumed run may be given more (or fewer) epochs in all; any other key would continue the checkpoint's
# weights, best epoch and split on other data or another recipe, one run's model mixed with another's
RESUME_MAY_CHANGE = ("epochs",)


def _check_resumable(checkpoint: dict, config: TrainConfig, path: Path, run_dir: Path, say) -> None:
    """Refuse to resume when ``config`` would read other data or train another recipe than the run's own (saved
    in the checkpoint, which the run's config.json repeats): only ``epochs`` and the keys crossval lets differ
    (``NOT_COMPARED``) may change."""
    from lungseg_core.training.config import listed_differences, saved_config_differences, saved_roots_are_relative

    saved = checkpoint.get("config", {})
    own_file = config.source_path and Path(config.source_path).resolve() == (run_dir / "config.json").resolve()
    if own_file and saved_roots_are_relative(saved):
        # saved before runs stored their roots absolute: relative to the recipe's folder, not the run's
        raise InputError(f"Cannot resume '{path}' with its own config.json: its relative data roots belong to the "
                         "folder of the config file the run was started with",
                         "resume with that config file and the run's --set/--fold options (its model card's "
                         "\"command\"); only --epochs may change")
    differences = saved_config_differences(saved, config, RESUME_MAY_CHANGE)
    if differences:
        raise InputError(f"Cannot resume '{path}': it was trained with another config ({listed_differences(differences)})",
                         "resume with the run's own config: RUN_DIR/config.json, or the config file and --set/--fold "
                         "options the run was started with (its model card's \"command\"); only --epochs may change. "
                         "Or start a new run in another folder (-o)")
    _check_optional_sources(checkpoint, config, path, say)


def _check_optional_sources(checkpoint: dict, config: TrainConfig, path: Path, say) -> None:
    """An ``optional`` source is skipped when its folder is missing: on resume that would continue the run on
    other data without a word, so its presence must be what it was when the run started."""
    missing = config.missing_optional_sources()
    roots = [str(config.resolve_root(config.data[index].root)) for index in missing]
    if "missing_sources" not in checkpoint:  # saved by an older version, which did not record it
        if missing:
            say(f"warning: optional data source(s) {', '.join(roots)} missing; this run's checkpoint does not say "
                "whether they were there when it started: if they were, the resumed epochs train on other data")
        return
    changed = sorted(set(missing) ^ set(checkpoint["missing_sources"]))
    if changed:
        what = [f"data[{i}] {config.resolve_root(config.data[i].root)} "
                + ("is missing (the run trained on it)" if i in missing else "is there now (the run had none)")
                for i in changed]
        raise InputError(f"Cannot resume '{path}': its optional data changed ({'; '.join(what)})",
                         "restore the data as it was when the run started, or start a new run in another folder (-o)")


def _check_same_cases(checkpoint: dict, data: TrainingData, path: Path) -> None:
    """The run's split must be the one saved: other cases (files added or removed) would continue the weights on
    other data, and validation cases could be cases the saved epochs trained on."""
    from lungseg_core.text import shown_list

    saved = checkpoint.get("cases")
    if saved is None:  # saved by an older version
        return
    for side, now in (("training", data.train_cases), ("validation", data.val_cases)):
        before = saved["train" if side == "training" else "val"]
        if list(before) != list(now):
            gone, new = sorted(set(before) - set(now)), sorted(set(now) - set(before))
            raise InputError(f"Cannot resume '{path}': its {side} cases changed (no longer there: "
                             f"{shown_list(gone) or 'none'}; new: {shown_list(new) or 'none'})",
                             "resume on the data the run started with, or start a new run in another folder (-o)")


def _write_package(config: TrainConfig, run_dir: Path, best_path: Path, data: TrainingData, state: dict,
                   command: str, device: torch.device, info: DistInfo) -> Path | None:
    if not best_path.exists():
        return None
    from lungseg_core.models.pretrained import encoder_weights_record
    from lungseg_core.models.registry import network_kwargs
    from lungseg_core.models.zoo import save_model_package

    best = load_checkpoint(best_path)
    model = build_network(config, encoder_weights=False)
    model.load_state_dict(best["model"])
    best_row = next(row for row in state["history"] if row["epoch"] == best["epoch"])
    metric_command = command or f"lungseg train {config.source_path or 'CONFIG.json'}"
    if data.held_out_validation:
        where = f"validation split ({len(data.val_cases)} case(s): {shown_list(data.val_cases, 8)})"
    else:
        where = "the training slices themselves (no validation split): not an estimate of accuracy on new cases"
    metrics = {
        key: {"value": round(float(value), 6), "command": metric_command, "data": where, "epoch": best["epoch"]}
        for key, value in best_row.items() if key.startswith("val_dice") or key == "val_loss"
    }
    card = {
        "name": config.name,
        "task": config.task,
        "description": config.description,
        "architecture": config.architecture,
        "architecture_kwargs": network_kwargs(config.architecture_kwargs),
        "in_channels": config.in_channels,
        "num_classes": config.num_classes,
        "slice_spec": config.spec().to_dict(),
        "labels": label_names(config.task, config.num_classes),
        "training": {
            "data": "; ".join(data.descriptions),
            "config": config.to_dict(),
            "command": command,
            "seed": config.seed,
            "epochs": state["epoch"],
            "best_epoch": best["epoch"],
            "seconds": round(state["seconds"], 1),
            "hardware": hardware_description(device, info.world_size),
            "train_cases": data.train_cases,
            "val_cases": data.val_cases,
        },
        "metrics": metrics,
        "version": 1,
    }
    if config.combine_with_classical:
        card["combine_with_classical"] = True
    if config.test_time_mirror:
        card["test_time_mirror"] = True
    if config.init_weights:
        card["training"]["fine_tuned_from"] = config.init_weights
    if config.architecture_kwargs.get("encoder_weights"):
        card["training"]["encoder_weights"] = encoder_weights_record(config.architecture_kwargs["encoder_weights"], model)
    if config.crop_to_lungs:  # inference then cuts the CT to its lungs too (Segmenter.lung_box)
        card["crop_to_lungs"] = True
    return save_model_package(model, card, run_dir / "model")
