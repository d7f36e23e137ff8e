"""`--overwrite` replaces only what img2num wrote, never the data a job reads or the user's own
folders, and a target that cannot be written is refused before any training."""

import os
import shutil

import pytest
from conftest import one_line_error, run_cli, write_photos

from img2num.io import MARKER_FILE


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_replaces_the_training_data(capsys, tmp_path, monkeypatch):
    write_photos(tmp_path / "data", count=8)
    before = _tree(tmp_path / "data")
    # Refused before any training: a run would take seconds, the refusal none of them.
    monkeypatch.setattr("img2num.training.resolve_splits", lambda *a, **k: pytest.fail("read the data"))
    for run in (tmp_path / "data", tmp_path):
        status, _, err = run_cli(capsys, "train", tmp_path / "data", "--model", "mlp", "--run", run, "--overwrite")
        assert status == 1
        assert one_line_error(err) == (
            f"img2num: error: {run}: holds data this command reads ({tmp_path / 'data'}); "
            "--overwrite never replaces it, choose another folder"
        )
    assert _tree(tmp_path / "data") == before
    # The images a CSV names are data too, wherever the CSV lies.
    monkeypatch.undo()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "labels.csv").write_text(
        "file,label\n" + "".join(f"{tmp_path / 'data' / 'img' / f'{i:03d}.png'},{i}\n" for i in range(8))
    )
    (tmp_path / "data" / MARKER_FILE).write_text("run\n")  # even dressed up as a run
    status, _, err = run_cli(capsys, "train", tmp_path / "elsewhere", "--model", "mlp", "--epochs", "1", "--run", tmp_path / "data", "--overwrite")
    assert status == 1 and "holds data this command reads" in one_line_error(err)
    assert (tmp_path / "data" / "labels.csv").read_bytes() == before["labels.csv"]


def test_overwrite_never_replaces_a_folder_img2num_did_not_write(capsys, trained_run, tiny_folder, tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("three years of work")
    for argv in (
        ["train", tiny_folder, "--model", "mlp", "--epochs", "1", "--run", thesis, "--overwrite"],
        ["explain", trained_run.path, tiny_folder / "test.npz", "--out", thesis, "--overwrite", "--steps", "4"],
        ["compare", tiny_folder, "--models", "mlp", "--epochs", "1", "--out", thesis, "--overwrite"],
    ):
        status, _, err = run_cli(capsys, *argv)
        assert status == 1
        assert f"{thesis}: is not an img2num " in one_line_error(err), err
        assert "--overwrite replaces only what img2num wrote" in err
    assert _tree(thesis) == {"thesis.txt": b"three years of work"}


def test_overwrite_replaces_runs_with_the_marker_and_older_runs_by_their_files(trained_run, tmp_path):
    old, fixture_path = tmp_path / "old", trained_run.path
    shutil.copytree(trained_run.path, old)
    assert (old / MARKER_FILE).read_text() == "run\n"  # every run gets the marker
    (old / MARKER_FILE).unlink()  # a run from before the marker: config.json and model.keras
    trained_run.save(old, overwrite=True)
    assert (old / MARKER_FILE).read_text() == "run\n"
    trained_run.save(old, overwrite=True)  # and again, by its marker
    from img2num.errors import Img2NumError

    explained = tmp_path / "explained"
    explained.mkdir()
    (explained / MARKER_FILE).write_text("explained\n")
    with pytest.raises(Img2NumError, match="is not an img2num run folder"):
        trained_run.save(explained, overwrite=True)  # another kind of img2num folder
    trained_run.path = fixture_path  # saving moved the shared fixture's path


def test_predict_and_evaluate_never_overwrite_their_input(capsys, trained_run, tiny_folder, tmp_path):
    data = tmp_path / "test.npz"
    shutil.copy(tiny_folder / "test.npz", data)
    before = data.read_bytes()
    status, _, err = run_cli(capsys, "predict", trained_run.path, data, "--output", data, "--overwrite")
    assert status == 1
    assert one_line_error(err) == (
        f"img2num: error: {data}: is data this command reads; --overwrite never replaces its input, choose another output file"
    )
    status, _, err = run_cli(capsys, "evaluate", trained_run.path, data, "--output", data, "--overwrite")
    assert status == 1 and "is data this command reads" in one_line_error(err)
    assert data.read_bytes() == before


def test_the_working_folder_and_unwritable_targets_are_refused_before_training(capsys, trained_run, tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("img2num.training.resolve_splits", lambda *a, **k: pytest.fail("read the data"))
    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    monkeypatch.chdir(run)
    status, _, err = run_cli(capsys, "train", tiny_folder, "--model", "mlp", "--run", ".", "--overwrite")
    assert status == 1 and one_line_error(err) == (
        "img2num: error: .: is the working folder or holds it; --overwrite never replaces it, choose another folder"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no ..*.old left
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    status, _, err = run_cli(capsys, "train", tiny_folder, "--model", "mlp", "--run", tmp_path / "notes.txt" / "run")
    assert status == 1 and one_line_error(err) == (
        f"img2num: error: {tmp_path / 'notes.txt' / 'run'}: cannot be written; {tmp_path / 'notes.txt'} is a file, not a folder"
    )
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        status, _, err = run_cli(capsys, "train", tiny_folder, "--model", "mlp", "--run", locked / "x")
        assert status == 1 and one_line_error(err).endswith(f"cannot be written; {locked}: Permission denied")
