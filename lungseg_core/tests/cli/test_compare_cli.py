"""``lungseg compare`` through the real command dispatcher."""

from __future__ import annotations

from lungseg_core.cli.main import main
from lungseg_core.tests.reports.test_compare import case_document, write_folder


def test_compare_command_writes_outputs_and_refuses_to_overwrite(tmp_path, capsys):
    base = write_folder(tmp_path / "base", case_document("p1", slice(8, 12)))
    follow = write_folder(tmp_path / "follow", case_document("p1", slice(8, 10)))
    out = tmp_path / "out"
    assert main(["compare", str(base), str(follow), "-o", str(out)]) == 0
    assert (out / "compare.csv").exists() and (out / "compare.png").exists()
    assert str(out / "compare.csv") in capsys.readouterr().out
    assert main(["compare", str(base), str(follow), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["compare", str(base), str(follow), "-o", str(out), "--overwrite"]) == 0


def test_compare_command_default_output_and_user_error(tmp_path, capsys):
    base = write_folder(tmp_path / "base", case_document("p1", slice(8, 12)))
    follow = write_folder(tmp_path / "follow", case_document("p1", slice(8, 10)))
    assert main(["compare", str(base), str(follow)]) == 0
    assert (follow / "compare" / "compare.csv").exists()
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(base), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lungseg compare: error:") and "Traceback" not in err
