"""Network architectures behind one registry, and loading local ImageNet weights into ResNet encoders.

``build_model(name, in_channels, num_classes, **kwargs)`` builds any of ``list_architectures()``;
``ARCHITECTURES[name]`` says what input it expects (``spatial_dims``, ``size_divisor``).
"""

from lungseg_core.models.pretrained import load_encoder_weights
from lungseg_core.models.registry import ARCHITECTURES, ArchitectureInfo, build_model, list_architectures

__all__ = ["ARCHITECTURES", "ArchitectureInfo", "build_model", "list_architectures", "load_encoder_weights"]
