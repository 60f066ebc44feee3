"""Folder evaluation on small phantom files with known answers, and case-name matching."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungseg_core.errors import InputError
from lungseg_core.evaluation import CSV_COLUMNS, evaluate_folders, index_folder, match_cases, normalized_case_key
from lungseg_core.evaluation.evaluate import present_values
from lungseg_core.io import Volume, write_labelmap, write_segmentation

SHAPE = (12, 20, 28)  # (z, y, x)
SPACING_XYZ = (0.8, 0.9, 2.0)
SHIFT_X = 2  # voxels: HD95 of the shifted left lung = 2 * 0.8 mm


def phantom_labels() -> tuple[np.ndarray, np.ndarray]:
    lungs = np.zeros(SHAPE, np.uint8)
    lungs[2:10, 4:16, 3:11] = 1
    lungs[2:10, 4:16, 15:23] = 2
    infection = np.zeros(SHAPE, np.uint8)
    infection[4:8, 6:12, 5:9] = 1
    infection[4:7, 6:10, 17:21] = 2
    return lungs, infection


def shift_left_lung(lungs: np.ndarray, k: int) -> np.ndarray:
    shifted = lungs.copy()
    shifted[lungs == 2] = 0
    shifted[np.roll(lungs == 2, k, axis=2)] = 2
    return shifted


def reference_volume() -> Volume:
    return Volume(np.zeros(SHAPE, np.int16), spacing=SPACING_XYZ, origin=(-10.0, 5.0, 30.0))


def slice_mask(offset_x: int = 0) -> np.ndarray:
    mask = np.zeros((30, 40), np.uint8)
    mask[8:20, 10 + offset_x:24 + offset_x] = 1
    return mask


def write_png(path: Path, array: np.ndarray, palette: bool = False) -> None:
    image = Image.fromarray(array.astype(np.uint8), mode="L")
    if palette:
        image = image.convert("P")
        image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 - 3) * 3)
    image.save(path)


def make_folders(root: Path) -> tuple[Path, Path]:
    """pred/ and ref/ with: a perfect case, a shifted case (.seg.nrrd reference), a finer-grid prediction,
    a palette PNG mask, and one unmatched file on each side; all references in lungseg's labels (a folder holds
    one convention: binary masks are in :func:`make_binary_png_folders`)."""
    pred_dir, ref_dir = root / "pred", root / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    ref = reference_volume()
    lungs, infection = phantom_labels()

    write_labelmap(pred_dir / "perfect_lungs.nii.gz", ref, lungs)
    write_labelmap(pred_dir / "perfect_infection.nii.gz", ref, infection)
    write_labelmap(ref_dir / "perfect_lungs.nii.gz", ref, lungs)
    write_labelmap(ref_dir / "perfect_infection.nii.gz", ref, infection)

    shifted = shift_left_lung(lungs, SHIFT_X)
    write_segmentation(pred_dir / "shifted.seg.nrrd", ref, {"lungs": shifted, "infection": infection})
    write_segmentation(ref_dir / "shifted.seg.nrrd", ref, {"lungs": lungs, "infection": infection})

    # prediction on a 3x finer x grid covering the same voxels: nearest-neighbour resampling recovers it
    step = SPACING_XYZ[0] / 3
    finer = Volume(np.zeros(SHAPE[:2] + (SHAPE[2] * 3,)), spacing=(step,) + SPACING_XYZ[1:],
                   origin=(ref.origin[0] - step,) + ref.origin[1:])
    write_labelmap(pred_dir / "finer_lungs.nii.gz", finer, np.repeat(lungs, 3, axis=2))
    write_labelmap(ref_dir / "finer.nii.gz", ref, lungs)  # plain labelmap: lungs when --task all

    flat = Volume(np.zeros((1, 30, 40)), is_2d=True)
    palette_labels = slice_mask().copy()
    palette_labels[10:14, 12:18] = 2
    write_labelmap(pred_dir / "slice02_infection.nii.gz", flat, palette_labels[np.newaxis])
    write_png(ref_dir / "slice02.png", palette_labels, palette=True)

    write_labelmap(pred_dir / "lonely_lungs.nii.gz", ref, lungs)
    write_labelmap(ref_dir / "orphan_lungs.nii.gz", ref, lungs)
    (pred_dir / "report.pdf").write_bytes(b"not a segmentation")
    return pred_dir, ref_dir


def make_binary_png_folders(root: Path, task: str = "infection") -> tuple[Path, Path]:
    """pred/slice01_TASK.nii.gz (labels 1 and 2, shifted 3 pixels) and ref/slice01.png, a 0/255 mask."""
    pred_dir, ref_dir = root / "pred", root / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    labels = np.zeros((1, 30, 40), np.uint8)
    labels[0][slice_mask(offset_x=3) > 0] = 1
    labels[0, 10:14, 16:22] = 2
    write_labelmap(pred_dir / f"slice01_{task}.nii.gz", Volume(np.zeros((1, 30, 40)), is_2d=True), labels)
    write_png(ref_dir / "slice01.png", slice_mask() * 255)
    return pred_dir, ref_dir


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    pred_dir, ref_dir = make_folders(tmp_path_factory.mktemp("eval"))
    return evaluate_folders(pred_dir, ref_dir, progress=False)


def row(result, case: str, task: str, label: str) -> dict:
    matches = [r for r in result.rows if (r["case"], r["task"], r["label"]) == (case, task, label)]
    assert len(matches) == 1, (case, task, label)
    return matches[0]


def test_perfect_case_scores_dice_one_and_zero_distance(evaluated):
    for task in ("lungs", "infection"):
        for label in ("1", "2", "1+2"):
            values = row(evaluated, "perfect", task, label)
            assert values["dice"] == 1.0 and values["hd95_mm"] == 0.0 and values["nsd_1mm"] == 1.0
            assert values["volume_diff_ml"] == 0.0
    right = row(evaluated, "perfect", "lungs", "1")
    assert right["label_name"] == "Right lung"
    assert right["volume_ref_ml"] == pytest.approx(8 * 12 * 8 * np.prod(SPACING_XYZ) / 1000)


def test_shifted_case_from_seg_nrrd_gives_known_hd95(evaluated):
    left = row(evaluated, "shifted", "lungs", "2")
    assert left["hd95_mm"] == pytest.approx(SHIFT_X * SPACING_XYZ[0])
    assert left["dice"] == pytest.approx((8 - SHIFT_X) / 8)
    assert row(evaluated, "shifted", "lungs", "1")["dice"] == 1.0
    assert row(evaluated, "shifted", "infection", "2")["dice"] == 1.0


def test_prediction_on_another_grid_is_resampled_onto_the_reference(evaluated):
    assert row(evaluated, "finer", "lungs", "1+2")["dice"] == 1.0
    assert row(evaluated, "finer", "lungs", "2")["hd95_mm"] == 0.0
    assert not [r for r in evaluated.rows if r["case"] == "finer" and r["task"] == "infection"]


@pytest.mark.parametrize("task", ["infection", "lungs"])
def test_binary_png_reference_gets_only_the_union_row_in_pixels(tmp_path, task):
    """A 0/255 PNG lung mask (the usual 2D lung data sets) was refused as 'a lesion mask' with the advice to
    score it as infection; it is 'Lungs (both)', as a binary 3D lung mask is."""
    from lungseg_core.evaluation import check_reference_folder

    pred_dir, ref_dir = make_binary_png_folders(tmp_path, task)
    check_reference_folder(ref_dir, task)
    result = evaluate_folders(pred_dir, ref_dir, task=task, progress=False)
    assert [(r["task"], r["label"]) for r in result.rows] == [(task, "1+2")]
    assert result.rows[0]["hd95_mm"] == pytest.approx(3.0)  # shifted 3 pixels, spacing 1
    assert result.rows[0]["dice"] == pytest.approx(2 * 12 * 11 / (2 * 12 * 14))
    assert result.summary["pixel_unit_cases"] == result.summary["binary_reference_cases"] == ["slice01"]
    assert any("pixels" in note for note in result.summary["notes"])


def test_palette_png_reference_is_in_pixel_units(evaluated):
    assert evaluated.summary["pixel_unit_cases"] == ["slice02"]


def test_palette_png_reference_keeps_its_labels(evaluated):
    assert row(evaluated, "slice02", "infection", "1")["dice"] == 1.0
    assert row(evaluated, "slice02", "infection", "2")["dice"] == 1.0


def test_unmatched_cases_are_reported(evaluated):
    assert evaluated.unmatched_predictions == ["lonely"]
    assert evaluated.unmatched_references == ["orphan"]
    assert evaluated.summary["unmatched"] == {"predictions": ["lonely"], "references": ["orphan"]}
    assert evaluated.ok and evaluated.failures == []


def test_metrics_csv_has_the_documented_columns_and_rows(evaluated):
    with open(evaluated.metrics_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == CSV_COLUMNS
        lines = list(reader)
    assert len(lines) == len(evaluated.rows)
    left = next(r for r in lines if (r["case"], r["task"], r["label"]) == ("shifted", "lungs", "2"))
    assert float(left["hd95_mm"]) == pytest.approx(1.6)
    assert evaluated.out_dir == evaluated.metrics_csv.parent
    assert evaluated.out_dir.name == "evaluation"


def test_summary_statistics_per_task_and_label(evaluated):
    summary = json.loads(evaluated.summary_json.read_text())
    left = summary["metrics"]["lungs"]["2"]
    assert left["label_name"] == "Left lung"
    # left-lung Dice over perfect (1), shifted (0.75) and finer (1)
    assert left["n_cases"] == 3 and left["dice"]["n"] == 3
    assert left["dice"]["mean"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert left["dice"]["min"] == pytest.approx(0.75) and left["dice"]["max"] == 1.0
    assert left["dice"]["median"] == 1.0
    assert left["dice"]["std"] == pytest.approx(np.std([1, 0.75, 1]))
    assert summary["units"]["hd95_mm"] == "mm"


def test_boxplot_is_a_png(evaluated):
    with Image.open(evaluated.boxplot_png) as image:
        assert image.format == "PNG" and image.size[0] > 400


def test_no_partial_files_left_in_the_output_folder(evaluated):
    assert sorted(p.name for p in evaluated.out_dir.iterdir()) == ["boxplot.png", "metrics.csv", "summary.json", "worst_cases"]
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in (evaluated.out_dir / "worst_cases").iterdir())


def test_single_task_and_custom_output_folder(tmp_path):
    pred_dir, ref_dir = make_folders(tmp_path)
    result = evaluate_folders(pred_dir, ref_dir, tmp_path / "out", task="infection", progress=False)
    assert {r["task"] for r in result.rows} == {"infection"}
    assert (tmp_path / "out" / "metrics.csv").is_file()
    # with --task infection the plain labelmap finer.nii.gz is taken as infection, but that prediction is lungs
    assert {"case": "finer", "task": "infection", "reason": "no infection prediction"} in result.summary["skipped"]


def test_one_empty_label_gives_nan_distances_and_counts_them(tmp_path):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    lungs, infection = phantom_labels()
    no_consolidation = np.where(infection == 2, 0, infection)
    write_labelmap(pred_dir / "a_infection.nii.gz", ref, no_consolidation)
    write_labelmap(ref_dir / "a_infection.nii.gz", ref, infection)
    result = evaluate_folders(pred_dir, ref_dir, progress=False)
    consolidation = row(result, "a", "infection", "2")
    assert consolidation["dice"] == 0.0 and consolidation["nsd_3mm"] == 0.0
    assert np.isnan(consolidation["hd95_mm"])
    stats = result.summary["metrics"]["infection"]["2"]["hd95_mm"]
    assert stats["n"] == 0 and stats["n_nan"] == 1 and stats["mean"] is None
    assert "nan" in result.metrics_csv.read_text()


def test_a_broken_case_is_reported_while_others_are_evaluated(tmp_path):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    lungs, _ = phantom_labels()
    write_labelmap(pred_dir / "good_lungs.nii.gz", ref, lungs)
    write_labelmap(ref_dir / "good_lungs.nii.gz", ref, lungs)
    (pred_dir / "bad_lungs.nii.gz").write_bytes(b"\x1f\x8b truncated")
    write_labelmap(ref_dir / "bad_lungs.nii.gz", ref, lungs)
    write_labelmap(pred_dir / "small_infection.nii.gz", Volume(np.zeros((1, 10, 10)), is_2d=True), np.ones((1, 10, 10)))
    write_png(ref_dir / "small.png", slice_mask() * 255)
    result = evaluate_folders(pred_dir, ref_dir, progress=False)
    assert not result.ok
    assert {f["case"] for f in result.failures} == {"bad", "small"}
    assert row(result, "good", "lungs", "1+2")["dice"] == 1.0
    assert all(f["error"] for f in result.failures)
    assert json.loads(result.summary_json.read_text())["failed"] == result.failures


def test_references_whose_values_cannot_be_the_tasks_labels_are_refused(tmp_path):
    """MedSeg-style 0..3 masks would otherwise be scored as lungs."""
    from lungseg_core.evaluation import check_reference_folder

    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    lungs, _ = phantom_labels()
    write_labelmap(pred_dir / "medseg_lungs.nii.gz", ref, lungs)
    write_labelmap(ref_dir / "medseg.nii.gz", ref, np.where(lungs == 2, 3, lungs))
    result = evaluate_folders(pred_dir, ref_dir, task="lungs", progress=False)
    assert "label values 3, which are not lungs labels" in result.failures[0]["error"]
    with pytest.raises(InputError, match="label values 3, which"):
        check_reference_folder(ref_dir, "lungs")


def test_every_reference_is_checked_before_a_run_not_only_the_first_cases(tmp_path):
    """The Slicer panel checks labels before segmenting; a bad label in case 4 used to stop the run afterwards."""
    from lungseg_core.evaluation import check_reference_folder

    lungs, _ = phantom_labels()
    for index in range(4):
        write_labelmap(tmp_path / f"case{index}.nii.gz", reference_volume(), lungs)
    check_reference_folder(tmp_path, "lungs")
    write_labelmap(tmp_path / "case3.nii.gz", reference_volume(), np.where(lungs == 2, 3, lungs))
    with pytest.raises(InputError, match="'case3.nii.gz' holds label values 3"):
        check_reference_folder(tmp_path, "lungs")


def test_binary_volume_references_are_scored_as_the_union_only(tmp_path):
    """COVID-19-CT-Seg's 0/1 infection_mask and 0/255 exports mark "infection" only: scoring their 1 as GGO gave
    a perfect prediction GGO 0.73 / consolidation 0, and 255 matched no label at all (Dice 0 even for the union)."""
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    lungs, infection = phantom_labels()
    # a task-named 0/255 file is binary too: read_labelmap makes it 0/1, which had made it "GGO only"
    for name, values in (("zero_one.nii.gz", (infection > 0) * 1), ("zero_255.nii.gz", (infection > 0) * 255),
                         ("named_255_infection.nii.gz", (infection > 0) * 255)):
        case = name.split(".")[0].removesuffix("_infection")
        write_labelmap(pred_dir / f"{case}_infection.nii.gz", ref, infection)
        write_labelmap(ref_dir / name, ref, values.astype(np.uint8))
    result = evaluate_folders(pred_dir, ref_dir, task="infection", progress=False)
    for case in ("zero_one", "zero_255", "named_255"):
        assert [(r["label"], r["dice"]) for r in result.rows if r["case"] == case] == [("1+2", 1.0)]
    assert result.summary["binary_reference_cases"] == ["named_255", "zero_255", "zero_one"]
    assert any("binary references" in note for note in result.summary["notes"])

    write_labelmap(pred_dir / "lung_lungs.nii.gz", ref, lungs)
    write_labelmap(ref_dir / "lung.nii.gz", ref, (lungs > 0).astype(np.uint8))  # a binary lung mask
    result = evaluate_folders(pred_dir, ref_dir, task="lungs", progress=False)
    assert [(r["label"], r["dice"]) for r in result.rows if r["case"] == "lung"] == [("1+2", 1.0)]


def test_the_reference_convention_is_decided_once_per_folder(tmp_path):
    """In a folder of lungseg labels a GGO-only case lost its GGO row (and a one-lung case its lung row) while
    the other cases kept theirs: the per-class statistics came from a biased subset of the cases."""
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    lungs, infection = phantom_labels()
    ggo_only, right_only = np.where(infection == 2, 0, infection), np.where(lungs == 2, 0, lungs)
    for case, inf, lung in (("ggo", ggo_only, right_only), ("both", infection, lungs)):
        write_labelmap(pred_dir / f"{case}_infection.nii.gz", ref, inf)
        write_labelmap(ref_dir / f"{case}_infection.nii.gz", ref, inf)
        write_labelmap(pred_dir / f"{case}_lungs.nii.gz", ref, lung)
        write_labelmap(ref_dir / f"{case}.nii.gz", ref, lung)  # plain: its convention is the folder's
    result = evaluate_folders(pred_dir, ref_dir, progress=False)
    for task in ("infection", "lungs"):
        assert {r["label"] for r in result.rows if (r["case"], r["task"]) == ("ggo", task)} == {"1", "2", "1+2"}
    assert row(result, "ggo", "infection", "1")["dice"] == 1.0
    assert row(result, "ggo", "lungs", "1")["dice"] == 1.0
    assert result.summary["binary_reference_cases"] == []

    # task-named like lungseg's outputs, a lone 1 is GGO even without another case to tell
    (ref_dir / "both_infection.nii.gz").unlink()
    result = evaluate_folders(pred_dir, ref_dir, task="infection", progress=False)
    assert {r["label"] for r in result.rows if r["case"] == "ggo"} == {"1", "2", "1+2"}


def test_a_folder_mixing_binary_masks_and_labels_is_refused_naming_examples(tmp_path):
    from lungseg_core.evaluation import check_reference_folder

    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    _, infection = phantom_labels()
    for case, values in (("mask", (infection > 0) * 255), ("labels", infection)):
        write_labelmap(pred_dir / f"{case}_infection.nii.gz", ref, infection)
        write_labelmap(ref_dir / f"{case}.nii.gz", ref, values.astype(np.uint8))
    message = "infection references mix two conventions: binary 0/255 masks \\('mask.nii.gz'\\) and .*'labels.nii.gz'"
    with pytest.raises(InputError, match=message):
        evaluate_folders(pred_dir, ref_dir, task="infection", progress=False)
    with pytest.raises(InputError, match=message):
        check_reference_folder(ref_dir, "infection")
    assert not (pred_dir / "evaluation").exists()


def test_present_values_counts_uint8_and_float_labels():
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 2, 3], labels[2, 0, 0] = 2, 255
    assert present_values(labels) == {0, 2, 255}
    assert present_values(labels.astype(np.float32) + 0.2) == {0, 2, 255}  # rounded as read_labelmap does


def test_lung_reference_numbering_the_left_lung_1_gets_a_warning_and_the_union_only(tmp_path):
    """COVID-19-CT-Seg / nnU-Net lung masks (1 left, 2 right) scored Right and Left lung 0.000 without a word."""
    from lungseg_core.evaluation.evaluate import SWAPPED_SIDES_WARNING

    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    ref = reference_volume()
    lungs, _ = phantom_labels()
    for case, reference in (("swapped", np.where(lungs > 0, 3 - lungs, 0)), ("ours", lungs)):
        write_labelmap(pred_dir / f"{case}_lungs.nii.gz", ref, lungs)
        write_labelmap(ref_dir / f"{case}.nii.gz", ref, reference.astype(np.uint8))
    result = evaluate_folders(pred_dir, ref_dir, task="lungs", progress=False)
    assert [(r["label"], r["dice"]) for r in result.rows if r["case"] == "swapped"] == [("1+2", 1.0)]
    assert {r["label"] for r in result.rows if r["case"] == "ours"} == {"1", "2", "1+2"}
    assert result.warnings == [{"case": "swapped", "task": "lungs", "warning": SWAPPED_SIDES_WARNING}]
    assert json.loads(result.summary_json.read_text())["warnings"] == result.warnings
    assert "swap values 1 and 2" in SWAPPED_SIDES_WARNING


def test_nothing_matching_is_a_clear_input_error(tmp_path):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    write_labelmap(pred_dir / "alpha_lungs.nii.gz", reference_volume(), phantom_labels()[0])
    write_labelmap(ref_dir / "beta_lungs.nii.gz", reference_volume(), phantom_labels()[0])
    with pytest.raises(InputError, match="No case names match.*alpha.*beta"):
        evaluate_folders(pred_dir, ref_dir, progress=False)
    assert not (pred_dir / "evaluation").exists()


def test_missing_folders_and_empty_prediction_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", tmp_path, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No predictions found"):
        evaluate_folders(tmp_path / "empty", tmp_path, progress=False)
    with pytest.raises(InputError, match="Unknown task"):
        evaluate_folders(tmp_path, tmp_path, task="heart", progress=False)


# ------------------------------------------------------------------------------------------ matching
def test_index_folder_reads_lungseg_outputs_and_reference_layouts(tmp_path):
    names = ["c1_lungs.nii.gz", "c1_infection.nii.gz", "c1.seg.nrrd", "c2.nrrd", "c2.png", "c3.PNG",
             "notes.txt", "c4_lungs.mha", ".hidden_lungs.nii.gz"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    references = index_folder(tmp_path, "reference")
    assert sorted(references) == ["c1", "c2", "c3", "c4"]
    assert set(references["c1"].task_files) == {"lungs", "infection"}
    assert references["c1"].segmentation.name == "c1.seg.nrrd"
    assert references["c2"].labelmap.name == "c2.nrrd"  # a volume is preferred over a PNG
    assert references["c3"].labelmap.name == "c3.PNG"
    predictions = index_folder(tmp_path, "prediction")
    assert sorted(predictions) == ["c1", "c4"]  # plain labelmaps are not segment outputs


@pytest.mark.parametrize("name, key", [
    ("case_001_0000", "case_001"), ("Case_001", "case_001"), ("lung_7_mask", "lung_7"),
    ("ct-12_gt", "ct-12"), ("coronacases_001", "coronacases_001"), ("seg", "seg"),
])
def test_normalized_case_key(name, key):
    assert normalized_case_key(name) == key


def test_match_cases_exact_then_normalised_and_never_ambiguous(tmp_path):
    from lungseg_core.evaluation.matching import CaseFiles

    def files(*names):
        return {n: CaseFiles(n, labelmap=Path(n)) for n in names}

    matching = match_cases(
        files("a", "case_001_0000", "X_mask", "x", "dup_gt"),
        files("a", "case_001", "X", "dup_mask", "dup_label", "other"),
    )
    pairs = {m.case: m.ref.case for m in matching.cases}
    assert pairs == {"a": "a", "case_001_0000": "case_001"}
    # "X_mask" and "x" both normalise to "x", "dup_mask" and "dup_label" both to "dup": never guessed
    assert matching.unmatched_predictions == ["X_mask", "dup_gt", "x"]
    assert matching.unmatched_references == ["X", "dup_label", "dup_mask", "other"]


def test_match_cases_pairs_a_unique_normalised_name():
    from lungseg_core.evaluation.matching import CaseFiles

    matching = match_cases({"Lung_3": CaseFiles("Lung_3")}, {"lung_3_gt": CaseFiles("lung_3_gt")})
    assert [(m.case, m.ref.case) for m in matching.cases] == [("Lung_3", "lung_3_gt")]
    assert matching.unmatched_predictions == matching.unmatched_references == []


# ---------------------------------------------------------------------------------------- real data
def test_real_ctchest4_prediction_against_its_slicer_segmentation(tmp_path, ctchest4_path, ctchest4_reference):
    """The real CTChest4 lungs (.seg.nrrd from Slicer, labels 5/6 by name) as reference."""
    import slicerio

    from lungseg_core.io import read_volume

    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "CTChest4.seg.nrrd").symlink_to(slicerio.get_testdata_file("Segmentation.seg.nrrd"))
    ct = read_volume(ctchest4_path)
    lungs = ctchest4_reference.array.copy()
    right = np.roll(lungs == 1, 1, axis=2)  # right lung moved one column (3.05 mm) along x
    lungs[lungs == 1] = 0
    lungs[right & (lungs != 2)] = 1  # the lungs touch: keep the left lung as it is
    write_labelmap(pred_dir / "CTChest4_lungs.nii.gz", ct, lungs)
    result = evaluate_folders(pred_dir, ref_dir, progress=False)
    assert result.ok
    assert row(result, "CTChest4", "lungs", "2")["dice"] == 1.0
    right_row = row(result, "CTChest4", "lungs", "1")
    assert 0.85 < right_row["dice"] < 1.0
    assert 0.0 < right_row["hd95_mm"] <= ct.spacing[0] + 1e-6
    assert right_row["volume_ref_ml"] == pytest.approx(34450 * ct.voxel_volume_ml)


def test_worst_cases_get_error_overlays(tmp_path, phantom):
    """The lowest-Dice cases of each task get an error-map picture; a perfect case ranks last."""
    from lungseg_core.evaluation import evaluate_folders
    from lungseg_core.evaluation.plots import error_map_rgb, worst_slice
    from lungseg_core.io import write_labelmap

    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    damaged = phantom.lungs.copy()
    damaged[10:20] = 0  # ten slices missed
    for case, pred in (("perfect", phantom.lungs), ("damaged", damaged)):
        write_labelmap(pred_dir / f"{case}_lungs.nii.gz", phantom.ct, pred)
        write_labelmap(ref_dir / f"{case}_lungs.nii.gz", phantom.ct, phantom.lungs)
    result = evaluate_folders(pred_dir, ref_dir, tmp_path / "eval", task="lungs", progress=False)
    assert [w["case"] for w in result.summary["worst_cases"]] == ["damaged", "perfect"]
    assert (tmp_path / "eval" / "worst_cases" / "damaged_lungs.png").stat().st_size > 1000
    z = worst_slice(phantom.lungs, damaged)
    assert 10 <= z < 20
    rgb = error_map_rgb(phantom.lungs[z], damaged[z])
    missed = (phantom.lungs[z] > 0) & (damaged[z] == 0)
    assert np.allclose(rgb[missed], (0.15, 0.45, 1.0))
