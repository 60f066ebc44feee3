"""Network architectures behind one registry, and loading local ImageNet weights into ResNet encoders.

``build_model(name, in_channels, num_classes, **kwargs)`` builds any of ``list_architectures()``;
``ARCHITECTURES[name]`` says what input it expects (``spatial_dims``, ``size_divisor``).
"""

import importlib

__all__ = ["ARCHITECTURES", "ArchitectureInfo", "build_model", "list_architectures", "load_encoder_weights"]
_HOME = {"load_encoder_weights": "pretrained", "ARCHITECTURES": "registry", "ArchitectureInfo": "registry",
         "build_model": "registry", "list_architectures": "registry"}


def __getattr__(name: str):
    # Imported on first use: torch takes ~2 s to import, and the classical method (models.classical,
    # models.zoo) needs no torch at all, so `lungseg segment --model threshold` no longer waits for it.
    if name in _HOME:
        return getattr(importlib.import_module(f"lungseg_core.models.{_HOME[name]}"), name)
    raise AttributeError(f"module 'lungseg_core.models' has no attribute {name!r}")
