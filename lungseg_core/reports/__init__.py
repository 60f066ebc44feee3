"""Quantification and reports: volumes, infection burden, zones, HU bands, figures, 3D, batch, compare.

Plotting and VTK are imported lazily inside the functions that need them, so ``quantify`` works with
numpy alone.
"""

from lungseg_core.reports.quantify import quantify

__all__ = ["quantify", "render_case_report", "render_case_pdf", "render_surfaces_png", "write_batch_summary",
           "compare_folders"]


def __getattr__(name: str):
    if name in ("render_case_report", "render_case_pdf"):
        from lungseg_core.reports import figures

        return getattr(figures, name)
    if name == "render_surfaces_png":
        from lungseg_core.reports.render3d import render_surfaces_png

        return render_surfaces_png
    if name == "write_batch_summary":
        from lungseg_core.reports.summary import write_batch_summary

        return write_batch_summary
    if name == "compare_folders":
        from lungseg_core.reports.compare import compare_folders

        return compare_folders
    raise AttributeError(name)
