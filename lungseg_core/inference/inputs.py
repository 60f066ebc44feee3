"""What the cases of a batch are: CT files, DICOM series folders (told by content), folders of them.

Shared by ``lungseg segment`` and Slicer's ``batch_segment.py``: one rule for what a folder of scans holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lungseg_core.inference.pipeline import BATCH_FILES, Case, output_paths
from lungseg_core.io.dicom import gdcm_finds_series, is_dicom_file
from lungseg_core.io.readers import VOLUME_SUFFIXES, case_name, is_image_file
from lungseg_core.text import shown_list


def find_cases(paths: list[Path], output: Path | None = None,
               note: Callable[[str], None] | None = None) -> list[Case]:
    """One :class:`Case` (path and name) per case. A file is a case as given; a DICOM series folder (told by its
    files' content, not their names) is one case; any other folder stands for the CT files in it and the DICOM
    series folders at any depth below it. What else a folder holds (the outputs of earlier runs and the
    ``output`` folder among it) is skipped with a ``note``: never silently, since a case missing from a batch of
    thousands would go unseen. See :func:`case_name_below` for the names."""
    finder = _CaseFinder(output.resolve() if output else None, note or (lambda line: None))
    found: dict[Path, Case] = {}
    for path in map(Path, paths):
        for case in finder.folder(path, top=True) if path.is_dir() else [path]:
            found.setdefault(case, Case(case, case_name_below(case, path)))  # named twice: runs once, first name
    return list(found.values())


def case_name_below(case: Path, top: Path) -> str:
    """The name of ``case`` found in the input ``top``: its path below ``top`` joined with "_"
    (``PAT00001/STU00001/SER00001`` -> ``PAT00001_STU00001_SER00001``), since DICOM exports repeat series folder
    names across patients; :func:`case_name` for ``top`` itself and what lies directly in it."""
    below = case.relative_to(top).parts[:-1] if case != top else ()
    return "_".join([*below, case_name(case)])


def is_ct_file(path: Path) -> bool:
    """A CT volume or 2D slice by its name; a .seg.nrrd is a segmentation, not a CT."""
    name = path.name.lower()
    return name.endswith(VOLUME_SUFFIXES) and not name.endswith(".seg.nrrd") or is_image_file(path)


def file_kinds(files: list[Path]) -> dict[str, list[Path]]:
    """``files`` as "ct" (by name), "dicom" (by content) and "other"."""
    kinds: dict[str, list[Path]] = {"ct": [], "dicom": [], "other": []}
    for path in files:  # the name first: reading the head of every NIfTI of a big folder would be wasted time
        kinds["ct" if is_ct_file(path) else "dicom" if is_dicom_file(path) else "other"].append(path)
    return kinds


@dataclass
class _CaseFinder:
    output: Path | None  # resolved
    note: Callable[[str], None]
    seen: set[Path] = field(default_factory=set)  # folders walked, against symlink loops

    def folder(self, folder: Path, top: bool) -> list[Path]:
        """The cases in ``folder``; below the top folder only DICOM series count (a labels/ folder beside
        images/ must not be segmented as CTs), so CT files there are noted, not taken."""
        self.seen.add(folder.resolve())
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        kinds = file_kinds(self._drop_own_outputs(folder, [p for p in entries if p.is_file()]))
        # files without the DICM preamble are GDCM's to judge, only where nothing else looks like a CT
        if kinds["dicom"] or (not kinds["ct"] and kinds["other"] and gdcm_finds_series(folder)):
            extra = kinds["ct"] + (kinds["other"] if kinds["dicom"] else [])
            self._skip(folder, extra, "not part of the DICOM series that makes this folder one case; give such a "
                                      "file as an input of its own to segment it")
            return [folder]
        self._skip(folder, kinds["other"], "neither a CT file nor a DICOM image")
        if not top:
            self._skip(folder, kinds["ct"], "CT files in a sub-folder of an input folder; give the sub-folder as an "
                                            "input to segment them")
        cases = (kinds["ct"] if top else []) + [case for sub in entries if sub.is_dir() for case in self._sub(sub)]
        return cases or ([folder] if top else [])  # nothing found: the DICOM reader says what it looked for

    def _sub(self, sub: Path) -> list[Path]:
        if sub.resolve() == self.output:
            self.note(f"skipped '{sub}': it is the output folder (-o)")
            return []
        return [] if sub.resolve() in self.seen else self.folder(sub, top=False)

    def _drop_own_outputs(self, folder: Path, files: list[Path]) -> list[Path]:
        """``files`` less what lungseg wrote into ``folder`` earlier (``-o`` this folder, now or in a past run)."""
        ours = earlier_outputs([p for p in files if p.suffix == ".json"], folder.resolve() == self.output)
        self._skip(folder, [p for p in files if p.name in ours], "outputs of an earlier lungseg run")
        return [p for p in files if p.name not in ours]

    def _skip(self, folder: Path, paths: list[Path], why: str) -> None:
        if paths:
            self.note(f"skipped in '{folder}': {shown_list((p.name for p in paths), 3)} ({why})")


def earlier_outputs(json_files: list[Path], output_folder: bool) -> set[str]:
    """Names lungseg wrote beside ``json_files``: for each case with a CASE.json of ours, every name the output
    naming gives it under any --task or report choice (a rerun with another --task leaves the other task's
    labelmap beside a CASE.json that no longer lists it), and the batch files of a folder that had outputs."""
    names: set[str] = set()
    for path in json_files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and "lungseg_version" in document:
            names.update(p.name for p in output_paths(path.parent, path.name[: -len(".json")], "all", True).values())
    return names | set(BATCH_FILES) if names or output_folder else names
