"""Render a segmentation node's closed surfaces offscreen, as Slicer's 3D view shows them (docs picture).

    python -m LungSegAILib.screenshot OUT.png [TASK] [MODEL]   (from LungSegAI/, lungseg_core importable)

segments CTChest4 (default: task "lungs", model "threshold") through the same bridge the module uses, builds the closed
surfaces with Slicer's own converter, and renders them from the front (patient's right on the viewer's
left) with a line of the measured volumes. Needs VTK offscreen rendering (EGL or OSMesa).
"""

from __future__ import annotations

import sys
from pathlib import Path

import vtk

from LungSegAILib import nodes


def render_segmentation_png(segmentation_node, path: str | Path, caption: str = "", size=(900, 700)) -> Path:
    nodes.show_closed_surfaces(segmentation_node, True)
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(0.76, 0.76, 0.90)  # Slicer's default 3D view background
    renderer.SetBackground2(0.05, 0.05, 0.25)
    renderer.GradientBackgroundOn()
    segmentation = segmentation_node.GetSegmentation()
    for segment_id in nodes.segment_ids(segmentation_node):
        surface = vtk.vtkPolyData()
        segmentation_node.GetClosedSurfaceRepresentation(segment_id, surface)
        if surface.GetNumberOfPoints() == 0:
            continue
        normals = vtk.vtkPolyDataNormals()
        normals.SetInputData(surface)
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputConnection(normals.GetOutputPort())
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        segment = segmentation.GetSegment(segment_id)
        actor.GetProperty().SetColor(*segment.GetColor())
        is_lung = segment_id.endswith("lung")
        actor.GetProperty().SetOpacity(0.45 if is_lung else 1.0)  # see infection through the lungs
        actor.GetProperty().SetSpecular(0.2)
        renderer.AddActor(actor)
    if caption:
        text = vtk.vtkTextActor()
        text.SetInput(caption)
        text.GetTextProperty().SetFontSize(18)
        text.GetTextProperty().SetColor(1, 1, 1)
        text.SetDisplayPosition(12, 12)
        renderer.AddViewProp(text)
    camera = renderer.GetActiveCamera()
    camera.SetFocalPoint(0, 0, 0)
    camera.SetPosition(0, 1, 0)  # anterior view in RAS: looking from +A toward the patient
    camera.SetViewUp(0, 0, 1)
    renderer.ResetCamera()
    camera.Zoom(1.3)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    writer = vtk.vtkPNGWriter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.SetFileName(str(path))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    return path


def main(argv: list[str]) -> int:
    import slicer
    import slicerio

    from lungseg_core.io import read_volume
    from LungSegAILib import results

    out = Path(argv[0] if argv else "docs/images/slicer_result.png")
    task = argv[1] if len(argv) > 1 else "lungs"
    model = argv[2] if len(argv) > 2 else "threshold"
    scene = slicer.vtkMRMLScene()
    ct = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))
    volume_node = nodes.volume_to_node(ct, scene, "CTChest4")
    result, imported, _ = results.segment_node(scene, volume_node, task, model, model, "cpu")
    caption = f"CTChest4, model '{model}':  " + "   ".join(
        f"{name} {value:.0f} mL" for name, value in imported.volumes_ml.items())
    render_segmentation_png(imported.segmentation, out, caption)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
