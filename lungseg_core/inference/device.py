"""Choose the compute device: ``auto`` takes a GPU when one works, else the CPU."""

from __future__ import annotations

from lungseg_core.errors import ModelError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto"):
    import torch

    requested = (device or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("A CUDA GPU was requested but none is available to PyTorch",
                         "use --device cpu (or auto), or install a CUDA build of torch")
    if requested not in DEVICE_CHOICES and not requested.startswith("cuda:") and requested != "mps":
        raise ModelError(f"Unknown device '{device}'", "use auto, cpu or cuda")
    try:
        chosen = torch.device(requested)
    except RuntimeError:  # e.g. "cuda:x"
        raise ModelError(f"Unknown device '{device}'", "use auto, cpu, cuda or cuda:N (N a GPU number)") from None
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ModelError(f"GPU {chosen.index} was requested but PyTorch sees {torch.cuda.device_count()} GPU(s)",
                         "use --device cuda (the first GPU), a smaller GPU number, or --device cpu")
    return chosen
