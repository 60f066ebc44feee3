"""Python packages the module needs inside Slicer, installed only with the user's consent and only if missing.

- torch comes from the PyTorch extension (``PyTorchUtils``), which picks the build matching the GPU driver;
  pip's default torch would often be the wrong one.
- The few other packages (``lungseg_core`` itself is shipped inside the extension) are pip-installed by
  ``slicer.util.pip_install`` only when they cannot be imported.
- Packages Slicer bundles (vtk, SimpleITK, numpy, ...) are never installed or upgraded: replacing them
  breaks Slicer itself.

The UI parts (confirmation dialogs, pip) are passed in as callables, so the decisions are testable here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Iterable

# Never touch these: Slicer ships them and its C++ side is built against them.
BUNDLED = frozenset({"vtk", "simpleitk", "numpy", "scipy", "slicer", "qt", "ctk", "pythonqt", "itk", "pip"})

# import name -> pip requirement, for what lungseg_core needs beyond Slicer's own packages.
REQUIREMENTS: dict[str, str] = {
    "skimage": "scikit-image>=0.21",
    "slicerio": "slicerio>=1.1",
    "safetensors": "safetensors>=0.4",
    "PIL": "pillow>=10",
    "matplotlib": "matplotlib>=3.7",
}

MIN_TORCH = "2.1"

PYTORCH_EXTENSION_MISSING = (
    "LungSegAI needs the PyTorch extension to run its neural networks. Install 'PyTorch' from the "
    "Extensions Manager (View > Extensions Manager), restart Slicer, then press Apply again. "
    "The classical (threshold) method works without it."
)


class DependencyError(RuntimeError):
    """A dependency is missing and cannot (or may not) be installed; the message says what to do."""


@dataclass
class Installers:
    """How to talk to the user and to pip; Slicer's versions are plugged in by the module."""

    confirm: Callable[[str], bool]
    pip_install: Callable[[str], None]
    log: Callable[[str], None] = print


def is_importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_requirements(requirements: dict[str, str] | None = None,
                         importable: Callable[[str], bool] = is_importable) -> list[str]:
    """pip requirements of the packages that cannot be imported, never a bundled one."""
    requirements = REQUIREMENTS if requirements is None else requirements
    missing = []
    for import_name, requirement in requirements.items():
        if import_name.lower() in BUNDLED or _distribution_name(requirement) in BUNDLED:
            continue
        if not importable(import_name):
            missing.append(requirement)
    return missing


def _distribution_name(requirement: str) -> str:
    for separator in ("<", ">", "=", "!", "~", "[", ";", " "):
        requirement = requirement.split(separator, 1)[0]
    return requirement.strip().lower()


def install_missing(installers: Installers, requirements: dict[str, str] | None = None,
                    importable: Callable[[str], bool] = is_importable) -> list[str]:
    """Ask once, then pip-install what is missing; returns what was installed."""
    missing = missing_requirements(requirements, importable)
    if not missing:
        return []
    if not installers.confirm(
        "LungSegAI needs these Python packages, which are not installed yet:\n  "
        + "\n  ".join(missing) + "\n\nInstall them now? (needs internet; takes a minute)"
    ):
        raise DependencyError("Required Python packages are not installed: " + ", ".join(missing))
    for requirement in missing:
        installers.log(f"Installing {requirement} ...")
        installers.pip_install(requirement)
    return missing


def ensure_torch(installers: Installers, import_pytorch_utils: Callable[[], object] | None = None):
    """Return the torch module, installing it through the PyTorch extension after asking the user."""
    try:
        pytorch_utils = (import_pytorch_utils or _import_pytorch_utils)()
    except ModuleNotFoundError:
        raise DependencyError(PYTORCH_EXTENSION_MISSING) from None
    torch_logic = pytorch_utils.PyTorchUtilsLogic()
    if not torch_logic.torchInstalled():
        if not installers.confirm(
            "LungSegAI's neural networks need PyTorch, which is not installed yet. Install it now through "
            "the PyTorch extension? (downloads up to a few GB; Slicer may need a restart afterwards)"
        ):
            raise DependencyError("PyTorch is not installed. Install it from the 'PyTorch Utils' module, "
                                  "or use the classical (threshold) method")
        installers.log("Installing PyTorch (this can take several minutes) ...")
        torch = torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=f">={MIN_TORCH}")
        if torch is None:
            raise DependencyError("PyTorch installation failed. Install it from the 'PyTorch Utils' module")
        return torch
    return torch_logic.torch


def _import_pytorch_utils():
    import PyTorchUtils  # noqa: WPS433 - only exists inside Slicer with the PyTorch extension

    return PyTorchUtils


def needs_torch(model_ids: Iterable[str]) -> bool:
    """The classical method runs on numpy/scipy alone; every other model needs torch."""
    return any(model not in ("threshold", "classical") for model in model_ids)
