"""`lungseg segment` and `lungseg models` end to end, including every bad input the product must explain."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from lungseg_core.cli.main import main
from lungseg_core.io import read_volume
from lungseg_core.models import build_model, zoo
from lungseg_core.tests.conftest import dice
from lungseg_core.tests.models.test_zoo import tiny_card


def run_cli(capsys, *argv):
    status = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_segment_ctchest4_with_classical_method(tmp_path, capsys, ctchest4_path, ctchest4_reference):
    status, out, _ = run_cli(capsys, "segment", ctchest4_path, "-o", tmp_path, "--model", "threshold", "-q")
    assert status == 0
    lungs = read_volume(tmp_path / "CTChest4_lungs.nii.gz")
    assert lungs.same_geometry(ctchest4_reference)
    scores = [dice(lungs.array == k, ctchest4_reference.array == k) for k in (1, 2)]
    assert min(scores) >= 0.97, scores
    doc = json.loads((tmp_path / "CTChest4.json").read_text())
    assert doc["measurements"]["volumes_ml"]["both_lungs"] > 1000  # an adult's lungs, in mL
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert rows[0]["status"] == "ok" and out == ""  # -q prints nothing


def test_progress_is_shown_unless_quiet(tmp_path, capsys, ctchest4_path):
    status, out, err = run_cli(capsys, "segment", ctchest4_path, "-o", tmp_path, "--model", "threshold", "--task", "lungs")
    assert status == 0
    assert "CTChest4" in err and "%" in err
    assert "1 of 1 case(s) segmented" in out


def test_case_notes_are_printed_for_one_case_and_counted_for_a_batch(tmp_path, capsys, phantom):
    """A scan without lungs: CASE.json's "no lung found" note is said on screen too, so nobody uses its 0 mL."""
    no_lungs = sitk.GetImageFromArray(np.where(phantom.lungs > 0, 40, phantom.ct.array).astype(np.int16))
    no_lungs.SetSpacing(phantom.ct.spacing)
    sitk.WriteImage(no_lungs, str(tmp_path / "abdomen.nii.gz"))
    status, out, _ = run_cli(capsys, "segment", tmp_path / "abdomen.nii.gz", "-o", tmp_path / "one", "--model",
                             "threshold", "--task", "lungs")
    assert status == 0
    notes = json.loads((tmp_path / "one" / "abdomen.json").read_text())["measurements"]["notes"]
    assert notes and notes[0].startswith("no lung found")
    assert f"note: {notes[0]}" in out.splitlines()
    chest = sitk.GetImageFromArray(phantom.ct.array.astype(np.int16))
    chest.SetSpacing(phantom.ct.spacing)
    sitk.WriteImage(chest, str(tmp_path / "chest.nii.gz"))
    status, out, _ = run_cli(capsys, "segment", tmp_path / "abdomen.nii.gz", tmp_path / "chest.nii.gz", "-o",
                             tmp_path / "two", "--model", "threshold", "--task", "lungs")
    assert status == 0
    assert "1 case(s) with notes" in out and notes[0] not in out  # a batch gets the count, not every note
    _, out, _ = run_cli(capsys, "segment", tmp_path / "abdomen.nii.gz", "-o", tmp_path / "quiet", "--model",
                        "threshold", "--task", "lungs", "-q")
    assert out == ""


def test_png_slice_input(tmp_path, capsys):
    from PIL import Image

    from lungseg_core.synthetic import make_chest_phantom

    phantom = make_chest_phantom(shape=(9, 128, 128), ggo=False, consolidation=False)
    display = np.clip((phantom.ct.array[4].astype(float) + 1350) / 1500 * 255, 0, 255).astype(np.uint8)
    Image.fromarray(display[::-1, ::-1]).save(tmp_path / "slice.png")  # displayed radiologically
    status, _, err = run_cli(capsys, "segment", tmp_path / "slice.png", "-o", tmp_path / "out", "--model", "threshold", "-q")
    assert status == 0, err
    labels = read_volume(tmp_path / "out" / "slice_lungs.nii.gz").array[0]
    assert {1, 2} <= set(np.unique(labels))
    # radiological display: the patient's right lung is on the image's left half
    assert np.argwhere(labels == 1)[:, 1].mean() < np.argwhere(labels == 2)[:, 1].mean()


def test_models_command_lists_classical_and_cards(capsys):
    status, out, _ = run_cli(capsys, "models")
    assert status == 0 and "threshold" in out
    status, out, _ = run_cli(capsys, "models", "--json")
    cards = json.loads(out)
    assert {c["task"] for c in cards} == {"lungs", "infection"}
    assert sum(c["default"] for c in cards) == 2  # exactly one default per task


def _write_ct(path, array, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def _three_d_only_model(tmp_path):
    card = tiny_card(name="only3d")
    card.update(architecture="unet3d", architecture_kwargs={"base_filters": 4}, in_channels=1, spatial_dims=3)
    return zoo.save_model_package(build_model("unet3d", in_channels=1, num_classes=3, base_filters=4), card, tmp_path / "models")


def bad_inputs(tmp_path, phantom):
    good = _write_ct(tmp_path / "good.nii.gz", phantom.ct.array)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:5000])
    nan = phantom.ct.array.astype(np.float32)
    nan[3, 40, 40] = np.nan
    byte_range = np.clip((phantom.ct.array + 1024) / 8, 0, 255).astype(np.uint8)
    dicom_folder = tmp_path / "dicom"
    dicom_folder.mkdir()
    (dicom_folder / "IM0001.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 64)
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "notes.nrrd").write_text("just some notes, not an image")
    from PIL import Image

    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 200).astype(np.uint8)).save(tmp_path / "slice.png")
    return {
        "empty file": ([tmp_path / "empty.nii.gz"], [], "empty file"),
        "truncated": ([truncated], [], "truncated"),
        "non-image": ([tmp_path / "notes.nrrd"], [], "Cannot read"),
        "nan": ([_write_ct(tmp_path / "nan.nrrd", nan)], [], "NaN"),
        "0-255 volume": ([_write_ct(tmp_path / "bytes.nii.gz", byte_range)], [], "8-bit"),
        "unreadable dicom": ([dicom_folder], [], "DICOM"),
        "2d for 3d model": ([tmp_path / "slice.png"], ["--lung-model", _three_d_only_model(tmp_path)], "needs a 3D volume"),
        "missing model": ([good], ["--model", tmp_path / "gone.safetensors"], "does not exist"),
    }


@pytest.mark.parametrize("case", ["empty file", "truncated", "non-image", "nan", "0-255 volume",
                                  "unreadable dicom", "2d for 3d model", "missing model"])
def test_bad_input_gives_one_line_error_and_no_partial_output(tmp_path, capsys, phantom, case):
    inputs, extra, expected = bad_inputs(tmp_path, phantom)[case]
    out_dir = tmp_path / "out"
    status, _, err = run_cli(capsys, "segment", *inputs, "-o", out_dir, *extra, "-q")
    assert status != 0
    error_lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(error_lines) == 1, err
    assert expected.lower() in error_lines[0].lower()
    assert "Traceback" not in err
    leftovers = [p.name for p in out_dir.iterdir()] if out_dir.exists() else []
    assert set(leftovers) <= {"manifest.csv"}, leftovers


def test_0_255_volume_is_accepted_with_display_intensity(tmp_path, capsys, phantom):
    display = np.clip((phantom.ct.array.astype(float) + 1350) / 1500 * 255, 0, 255).astype(np.uint8)
    path = _write_ct(tmp_path / "radiopaedia.nii.gz", display, spacing=phantom.ct.spacing)
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "out", "--model", "threshold",
                             "--intensity", "display", "--task", "lungs", "-q")
    assert status == 0, err
    lungs = read_volume(tmp_path / "out" / "radiopaedia_lungs.nii.gz").array
    assert dice(lungs > 0, phantom.lungs > 0) > 0.85


def test_raw_scanner_values_are_explained_and_convertible(tmp_path, capsys, phantom):
    raw = (phantom.ct.array.astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16)
    path = _write_ct(tmp_path / "raw.nii.gz", raw, spacing=phantom.ct.spacing)
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "out", "--model", "threshold", "-q")
    assert status != 0 and "--intensity raw" in err
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "out", "--model", "threshold",
                             "--intensity", "raw", "--task", "lungs", "-q")
    assert status == 0, err


def test_batch_with_one_bad_case_finishes_the_others(tmp_path, capsys, phantom):
    (tmp_path / "in").mkdir()
    _write_ct(tmp_path / "in" / "good.nii.gz", phantom.ct.array, spacing=phantom.ct.spacing)
    (tmp_path / "in" / "bad.nii.gz").write_bytes(b"")
    status, _, err = run_cli(capsys, "segment", tmp_path / "in", "-o", tmp_path / "out", "--model", "threshold", "-q")
    assert status == 1
    assert (tmp_path / "out" / "good_lungs.nii.gz").exists()
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open())}
    assert rows["good"]["status"] == "ok" and rows["bad"]["status"] == "failed"
    assert "bad" in err


def test_existing_results_need_overwrite(tmp_path, capsys, phantom):
    path = _write_ct(tmp_path / "c.nii.gz", phantom.ct.array, spacing=phantom.ct.spacing)
    assert run_cli(capsys, "segment", path, "-o", tmp_path / "o", "--model", "threshold", "--task", "lungs", "-q")[0] == 0
    status, out, _ = run_cli(capsys, "segment", path, "-o", tmp_path / "o", "--model", "threshold", "--task", "lungs")
    assert status == 0 and "skipped" in out  # a finished case is not redone (resuming a batch)
    (tmp_path / "o" / "c.seg.nrrd").unlink()  # only part of the case is left: never replaced silently
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "o", "--model", "threshold", "--task", "lungs", "-q")
    assert status == 1 and "--overwrite" in err
    status, _, _ = run_cli(capsys, "segment", path, "-o", tmp_path / "o", "--model", "threshold", "--task", "lungs",
                           "--overwrite", "-q")
    assert status == 0


def test_dicom_folder_input_says_which_series(tmp_path, capsys):
    from lungseg_core.tests.conftest import shared_file

    folder = shared_file("totalsegmentator_example/example_ct_dicom")
    status, out, err = run_cli(capsys, "segment", folder, "-o", tmp_path, "--model", "threshold", "--task", "lungs",
                               "--no-report")
    assert "DICOM series" in out and "20 slices" in out
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["input"]["dicom_series"]["slices"] == 20


def _small_phantom():
    from lungseg_core.synthetic import make_chest_phantom

    return make_chest_phantom(shape=(12, 48, 48), spacing=(7.0, 7.0, 24.0), ggo=False, consolidation=False)


def _picture(path):
    from PIL import Image

    Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8)).save(path)
    return path


def test_a_dicom_series_folder_with_a_picture_is_read_as_the_series(tmp_path, capsys):
    from lungseg_core.tests.io.test_dicom import write_series

    small = _small_phantom()
    write_series(tmp_path / "dcm", 0, "1.2.3.900", spacing=(7.0, 7.0, 24.0), array=small.ct.array.astype(np.int16))
    _picture(tmp_path / "dcm" / "preview.jpg")  # a thumbnail saved by a viewer: no CT slice
    status, _, err = run_cli(capsys, "segment", tmp_path / "dcm", "-o", tmp_path / "out", "--model", "threshold",
                             "--task", "lungs", "--no-report", "-q")
    assert status == 0, err
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert [(r["case"], r["status"]) for r in rows] == [("dcm", "ok")] and "12 slices" in rows[0]["note"]
    assert "preview.jpg" in err and "note" in err  # skipped, and said so


def test_folder_cases_are_its_ct_files_and_series_folders_at_any_depth_the_rest_is_noted(tmp_path):
    from lungseg_core.cli.segment import expand_inputs
    from lungseg_core.tests.io.test_dicom import write_series

    top = tmp_path / "in"
    for name in ("ex.nii.gz", "slice.png", "old.seg.nrrd", "notes.txt", "labels/ex.nii.gz"):
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_bytes(b"x")  # expansion goes by names and DICOM content, reading no image
    write_series(top / "patient7", 3, "1.2.3.901")
    write_series(top / "site" / "patient8" / "ct", 3, "1.2.3.902")
    (top / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x02\x00UI\x14\x001.2.840.10008.1.3.10")
    headless = write_series(top / "old" / "patient9", 3, "1.2.3.903")
    for path in headless:  # DICOM without the preamble: found by GDCM
        path.write_bytes(path.read_bytes()[132:])
    notes = []
    cases = expand_inputs([top, top / "patient7"], tmp_path / "out", notes.append)
    assert [c.path for c in cases] == [top / "ex.nii.gz", top / "slice.png", top / "old" / "patient9",
                                       top / "patient7", top / "site" / "patient8" / "ct"]  # patient7 once
    # named by the path below the input folder; what lies directly in it by its own name
    assert [c.name for c in cases] == ["ex", "slice", "old_patient9", "patient7", "site_patient8_ct"]
    text = "\n".join(notes)
    for name in ("notes.txt", "old.seg.nrrd", "DICOMDIR", "labels"):
        assert name in text, text


def test_series_folders_with_the_same_name_under_different_patients_all_segment_and_rerun_skips(tmp_path, capsys):
    """DICOM exports repeat series folder names across patients (PAT00001/STU00001/SER00001, patient1/CT):
    each case is named by its path below the input folder, so none collides."""
    from lungseg_core.tests.io.test_dicom import write_series

    array = _small_phantom().ct.array.astype(np.int16)
    top = tmp_path / "DICOM"
    for index, series in enumerate(("PAT00001/STU00001/SER00001", "PAT00002/STU00001/SER00001", "pts/patient1/CT",
                                    "pts/patient2/CT")):
        write_series(top / series, 0, f"1.2.3.91{index}", spacing=(7.0, 7.0, 24.0), array=array)
    argv = ["segment", top, "-o", tmp_path / "out", "--model", "threshold", "--task", "lungs", "--no-report", "-q"]
    status, _, err = run_cli(capsys, *argv)
    assert status == 0, err
    names = ["PAT00001_STU00001_SER00001", "PAT00002_STU00001_SER00001", "pts_patient1_CT", "pts_patient2_CT"]
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert [(r["case"], r["status"]) for r in rows] == [(name, "ok") for name in names]
    for name in names:
        assert (tmp_path / "out" / f"{name}_lungs.nii.gz").exists()
        assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["case"] == name

    status, _, err = run_cli(capsys, *argv)  # a rerun finds the finished cases by their new names
    assert status == 0, err
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert [(r["case"], r["status"]) for r in rows] == [(name, "skipped") for name in names]


def test_cases_that_still_share_a_name_fail_with_a_clear_error(tmp_path, capsys):
    from lungseg_core.tests.io.test_dicom import write_series

    array = _small_phantom().ct.array.astype(np.int16)
    write_series(tmp_path / "in" / "a" / "b_c", 0, "1.2.3.920", spacing=(7.0, 7.0, 24.0), array=array)
    write_series(tmp_path / "in" / "a_b" / "c", 0, "1.2.3.921", spacing=(7.0, 7.0, 24.0), array=array)
    status, _, err = run_cli(capsys, "segment", tmp_path / "in", "-o", tmp_path / "out", "--model", "threshold",
                             "--task", "lungs", "--no-report", "-q")
    assert status == 1
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert [(r["case"], r["status"]) for r in rows] == [("a_b_c", "ok"), ("a_b_c", "failed")]
    assert "same case name 'a_b_c'" in rows[1]["error"] and "would collide" in err


def test_rerun_into_the_input_folder_skips_its_own_outputs(tmp_path, capsys):
    folder = tmp_path / "cts"
    folder.mkdir()
    small = _small_phantom()
    _write_ct(folder / "ex.nii.gz", small.ct.array, spacing=small.ct.spacing)
    argv = ["segment", folder, "-o", folder, "--model", "threshold", "--task", "lungs", "-q"]
    assert run_cli(capsys, *argv)[0] == 0
    assert (folder / "summary.png").exists() and (folder / "ex.png").exists()
    status, _, err = run_cli(capsys, *argv[:-1])  # with progress: the finished case is skipped
    assert status == 0, err
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    assert [(r["case"], r["status"]) for r in rows] == [("ex", "skipped")]
    assert "outputs of an earlier lungseg run" in err

    inner = ["segment", folder, "-o", folder / "out", "--model", "threshold", "--task", "lungs", "--no-report", "-q"]
    assert run_cli(capsys, *inner)[0] == 0
    status, _, err = run_cli(capsys, *inner)
    assert status == 0 and "it is the output folder" in err, err
