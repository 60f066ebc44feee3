"""Offscreen VTK surface rendering of the lungs (semi-transparent) and infection (opaque).

Surfaces are extracted in voxel-index space with ``vtkDiscreteFlyingEdges3D`` and then mapped to LPS
millimetres with the volume's full index-to-LPS matrix (spacing, direction, origin), so the picture is
anatomically oriented for any storage order or oblique direction. The camera looks at the patient from
the front (anterior), head up, so the patient's right is on the screen's left as in the 2D views.

Headless machines need an offscreen OpenGL: the VTK >= 9.4 wheels load EGL (Debian: ``libegl1
libegl-mesa0 libgl1-mesa-dri``) or OSMesa (``libosmesa6``) at run time. Whether that works is probed once
in a subprocess (a missing or broken OpenGL may abort the process rather than raise); when it does not,
:func:`render_surfaces_png` logs why and returns None. The probe takes about a second, so the pipeline
starts it in the background (:func:`start_offscreen_probe`) before writing the other outputs.

Only the VTK modules used here are imported (``vtkmodules.*``): ``import vtk`` loads all of VTK, about a
second more per process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from lungseg_core.io.atomic import atomic_path
from lungseg_core.io.volume import Volume
from lungseg_core.labels import segments_for

log = logging.getLogger(__name__)

LUNG_OPACITY = 0.25
# Labelmaps are strided down to at most this many voxels per axis. 128 looks the same as 192 in the
# 520x560 px report panel and halves the triangles that software OpenGL (llvmpipe) must depth-peel.
MAX_SURFACE_GRID = 128

_PROBE = """
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkRenderer, vtkWindowToImageFilter
window = vtkRenderWindow()
window.SetOffScreenRendering(1)
renderer = vtkRenderer()
window.AddRenderer(renderer)
window.SetSize(8, 8)
window.Render()
grab = vtkWindowToImageFilter()
grab.SetInput(window)
grab.Update()
assert grab.GetOutput().GetDimensions()[:2] == (8, 8)
print(window.GetClassName())
"""


def _prefer_headless_window() -> None:
    # Without an X display, ask VTK for EGL directly instead of failing over from X11 with a warning.
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@functools.lru_cache(maxsize=1)
def _vtk() -> SimpleNamespace:
    """The VTK classes used here, imported module by module (see the module docstring)."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL render window and mappers)
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformPolyDataFilter
    from vtkmodules.vtkIOImage import vtkPNGWriter
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter

    return SimpleNamespace(**{cls.__name__: cls for cls in (
        vtkImageData, vtkMatrix4x4, vtkTransform, vtkPolyDataNormals, vtkWindowedSincPolyDataFilter,
        vtkDiscreteFlyingEdges3D, vtkTransformPolyDataFilter, vtkPNGWriter, vtkActor, vtkPolyDataMapper,
        vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter)})


_probe_lock = threading.Lock()
_probe: Future | None = None


def start_offscreen_probe() -> None:
    """Start probing offscreen OpenGL in the background (once per process); the answer is kept for
    :func:`offscreen_rendering_status`. Lets the probe run while the caller writes other outputs."""
    global _probe
    with _probe_lock:
        if _probe is None:
            _prefer_headless_window()  # set before the probe subprocess inherits the environment
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vtk-offscreen-probe")
            _probe = executor.submit(_run_probe)
            executor.shutdown(wait=False)


def offscreen_rendering_status() -> tuple[bool, str]:
    """(available, explanation) for VTK offscreen rendering on this machine; probed once per process."""
    start_offscreen_probe()
    assert _probe is not None
    return _probe.result()


def _run_probe() -> tuple[bool, str]:
    if importlib.util.find_spec("vtkmodules") is None:
        return False, "VTK is not installed (pip install vtk) - 3D rendering skipped"
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"VTK offscreen probe failed ({exc.__class__.__name__}) - 3D rendering skipped"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no message"])[-1][:200]
        return False, (
            f"no offscreen OpenGL for VTK ({reason}) - 3D rendering skipped; on Debian/Ubuntu install "
            "'libegl1 libegl-mesa0 libgl1-mesa-dri' (EGL) or 'libosmesa6' (OSMesa)"
        )
    return True, f"VTK offscreen rendering via {probe.stdout.strip() or 'unknown window'}"


def _stride_for(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return tuple(max(1, int(np.ceil(n / MAX_SURFACE_GRID))) for n in shape)


def _surface(labels: np.ndarray, value: int, index_to_lps: np.ndarray):
    """Smoothed surface of ``labels == value`` in LPS mm (vtkPolyData), or None when the label is absent."""
    from vtkmodules.util import numpy_support

    if not np.any(labels == value):
        return None
    vtk = _vtk()
    # One voxel of padding closes the surface where a label touches the array border.
    padded = np.pad((labels == value).astype(np.uint8), 1)
    image = vtk.vtkImageData()
    image.SetDimensions(padded.shape[2], padded.shape[1], padded.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(padded.ravel(), deep=True))
    edges = vtk.vtkDiscreteFlyingEdges3D()
    edges.SetInputData(image)
    edges.SetValue(0, 1)
    smooth = vtk.vtkWindowedSincPolyDataFilter()
    smooth.SetInputConnection(edges.GetOutputPort())
    smooth.SetNumberOfIterations(15)
    smooth.SetPassBand(0.1)
    smooth.NormalizeCoordinatesOn()
    matrix = vtk.vtkMatrix4x4()
    shift = np.eye(4)
    shift[:3, 3] = -1.0  # undo the padding offset
    for r, row in enumerate(index_to_lps @ shift):
        for c, v in enumerate(row):
            matrix.SetElement(r, c, float(v))
    transform = vtk.vtkTransform()
    transform.SetMatrix(matrix)
    to_lps = vtk.vtkTransformPolyDataFilter()
    to_lps.SetTransform(transform)
    to_lps.SetInputConnection(smooth.GetOutputPort())
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(to_lps.GetOutputPort())
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()  # a direction with negative determinant would otherwise turn them inward
    normals.Update()
    return normals.GetOutput()


def _strided_geometry(ct: Volume, stride: tuple[int, int, int]) -> np.ndarray:
    matrix = ct.ijk_to_lps()
    matrix[:3, :3] = matrix[:3, :3] @ np.diag(stride[::-1])  # stride is (z, y, x); ijk columns are (x, y, z)
    return matrix


def _actors(ct: Volume, lungs, infection):
    vtk = _vtk()
    stride = _stride_for(ct.shape)
    index_to_lps = _strided_geometry(ct, stride)
    sl = tuple(slice(None, None, s) for s in stride)
    layers = [("lungs", lungs, LUNG_OPACITY), ("infection", infection, 1.0)]
    actors = []
    for task, labels, opacity in layers:
        if labels is None:
            continue
        labels = np.asarray(labels)[sl]
        for spec in segments_for(task):
            surface = _surface(labels, spec.label, index_to_lps)
            if surface is None:
                continue
            mapper = vtk.vtkPolyDataMapper()
            mapper.SetInputData(surface)
            mapper.ScalarVisibilityOff()
            actor = vtk.vtkActor()
            actor.SetMapper(mapper)
            actor.GetProperty().SetColor(*spec.color)
            actor.GetProperty().SetOpacity(opacity)
            actors.append(actor)
    return actors


def _anterior_camera(renderer) -> None:
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    focal = np.array(camera.GetFocalPoint())
    distance = camera.GetDistance()
    camera.SetPosition(*(focal + np.array([0.0, -distance, 0.0])))  # in front of the patient (LPS -y)
    camera.SetViewUp(0.0, 0.0, 1.0)  # head up
    renderer.ResetCamera()
    camera.Zoom(1.3)


def render_surfaces_png(
    ct: Volume, lungs: np.ndarray | None, infection: np.ndarray | None, path, size: tuple[int, int] = (600, 600)
) -> Path | None:
    """Render lungs and infection surfaces to ``path`` (PNG); None when offscreen OpenGL is unavailable
    or there is nothing to render (the reason is logged)."""
    available, message = offscreen_rendering_status()
    if not available:
        log.warning(message)
        return None
    if ct.is_2d or ct.shape[0] < 2:
        log.info("3D rendering skipped: the input is a single slice")
        return None
    vtk = _vtk()
    actors = _actors(ct, lungs, infection)
    if not actors:
        log.info("3D rendering skipped: no lung or infection voxels")
        return None
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(0.0, 0.0, 0.0)
    renderer.SetUseDepthPeeling(1)
    for actor in actors:
        renderer.AddActor(actor)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetAlphaBitPlanes(1)
    window.SetMultiSamples(0)
    window.SetSize(int(size[0]), int(size[1]))
    window.AddRenderer(renderer)
    _anterior_camera(renderer)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.ShouldRerenderOff()  # the window was just rendered: read it back instead of rendering it again
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetInputConnection(grab.GetOutputPort())
    with atomic_path(path) as tmp:
        writer.SetFileName(str(tmp))
        writer.Write()
    window.Finalize()
    return Path(path)
