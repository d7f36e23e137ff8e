"""`compare`: one small comparison per session, and every artifact it must write; its input errors."""

import base64
import contextlib
import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from img2num.bayes import points_bayes_reference
from img2num.cli import main
from img2num.comparison import _reference, _splits, compare
from img2num.data import Dataset, load_dataset
from img2num.errors import Img2NumError
from img2num.metrics import regression_metrics
from img2num.models import create_model

SEEDS = [3, 4]
ENTRIES = ("mlp", "mean-baseline", "ridge-baseline")


@pytest.fixture(scope="session")
def compared(tiny_folder, tmp_path_factory):
    """`img2num compare` of the mlp and both baselines on the tiny points data: two seeds, two epochs.

    Returns the results (as saved), the output folder and what the command printed.
    """
    out = tmp_path_factory.mktemp("compare") / "out"
    printed = io.StringIO()
    argv = ["compare", str(tiny_folder), "--models", "mlp", "--epochs", "2", "--seeds", "2", "--seed", "3"]
    with contextlib.redirect_stdout(printed):
        status = main([*argv, "--quiet", "--out", str(out)])
    assert status == 0
    return json.loads((out / "results.json").read_text()), out, printed.getvalue()


def test_every_artifact_is_written(compared):
    summary, out, printed = compared
    lines = printed.splitlines()
    assert lines[-1] == f"results in {out} (report.html, report.md, leaderboard.md, results.json)"
    assert lines[-2] == f"best: {summary['best']}"
    assert [line.split()[0] for line in lines[:-2]] == [row["name"] for row in summary["leaderboard"]]
    assert lines[0].endswith("x best possible)")
    files = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    expected = {"leaderboard.md", "leaderboard.csv", "results.json", "report.md", "report.html", "loss_curves.png", "samples.png"}
    expected |= {f"pictures/{name}-{kind}.png" for name in ENTRIES for kind in ("diagnostics", "worst")}
    expected |= {f"runs/seed-{seed}/mlp/{name}" for seed in SEEDS for name in ("model.keras", "history.csv", "metrics.json")}
    assert expected <= files
    assert not [name for name in files if ".partial" in name or (name.startswith(".") and name != ".img2num")]
    assert (out / ".img2num").read_text() == "compare\n"  # what --overwrite may replace
    for name in expected:
        if name.endswith(".png"):
            with Image.open(out / name) as image:
                assert image.format == "PNG" and image.width > 300


def test_leaderboard_is_sorted_and_holds_every_column(compared, tiny_folder):
    summary, out, _ = compared
    rows = summary["leaderboard"]
    assert [row["name"] for row in rows][-1] == "bayes-rule"
    ranked = [row for row in rows if row["kind"] != "reference"]
    assert sorted(row["name"] for row in ranked) == sorted(ENTRIES)
    assert [row["test_mse"] for row in ranked] == sorted(row["test_mse"] for row in ranked)
    assert summary["best"] == ranked[0]["name"]
    reference = points_bayes_reference(8, 8).mse
    assert summary["reference_mse"] == pytest.approx(reference)
    for row in rows:
        assert row["mse_over_reference"] == pytest.approx(row["test_mse"] / reference)
        per_seed = [entry["metrics"]["test"] for entry in summary["entries"] if entry["name"] == row["name"]]
        for metric in ("rmse", "mae", "r2"):
            assert row[f"test_{metric}"] == pytest.approx(np.mean([metrics[metric] for metrics in per_seed])), row["name"]

    train = load_dataset(tiny_folder / "train.npz")
    test = load_dataset(tiny_folder / "test.npz")
    mean = next(row for row in rows if row["name"] == "mean-baseline")
    expected = regression_metrics(test.y, np.full(len(test), train.y.astype(np.float64).mean()))
    assert mean["test_mse"] == pytest.approx(expected["mse"], rel=1e-5)
    assert mean["parameters"] == 1 and mean["epochs_run"] is None

    mlp = next(row for row in rows if row["name"] == "mlp")
    per_seed = [entry for entry in summary["entries"] if entry["name"] == "mlp"]
    assert [entry["seed"] for entry in per_seed] == SEEDS and mlp["seeds"] == 2
    values = [entry["metrics"]["test"]["mse"] for entry in per_seed]
    assert mlp["test_mse"] == pytest.approx(np.mean(values))
    assert mlp["test_mse_sd"] == pytest.approx(np.std(values, ddof=1))
    assert values[0] != values[1]
    assert mlp["epochs_run"] == 2 and mlp["parameters"] == create_model("mlp", (8, 8, 1)).count_params() and mlp["train_seconds"] > 0
    for entry in per_seed:
        with open(out / entry["run"] / "history.csv") as handle:
            history = list(csv.DictReader(handle))
        assert entry["best_epoch"] == int(min(history, key=lambda row: float(row["val_loss"]))["epoch"])

    table = (out / "leaderboard.md").read_text()
    assert "| rank | model | kind | test MSE (mean ± sd) | RMSE | MAE | R^2 | MSE / Bayes | parameters |" in table
    lines = [line for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    assert [line.split("|")[2].strip() for line in lines] == [row["name"] for row in rows]
    assert f"{mlp['test_mse']:#.4g} ± {mlp['test_mse_sd']:#.4g}" in table
    with open(out / "leaderboard.csv") as handle:
        saved = list(csv.DictReader(handle))
    assert [row["name"] for row in saved] == [row["name"] for row in rows]
    assert float(saved[0]["test_mse"]) == pytest.approx(rows[0]["test_mse"])
    assert json.loads((out / "results.json").read_text())["leaderboard"] == rows


def test_bayes_rule_row_scores_the_optimal_prediction(compared, tiny_folder):
    summary, _, _ = compared
    test = load_dataset(tiny_folder / "test.npz")
    lit = test.x.reshape(len(test), -1).sum(axis=1)
    expected = regression_metrics(test.y, points_bayes_reference(8, 8).predict(lit))
    row = summary["leaderboard"][-1]
    assert row["kind"] == "reference" and row["test_mse"] == pytest.approx(expected["mse"])


def test_html_report_is_self_contained(compared):
    summary, out, _ = compared
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 2 + 2 * len(ENTRIES)
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<link" not in page and "<script" not in page
    assert sorted(re.findall(r"href='([^']*)'", page)) == sorted(f"#{name}" for name in ENTRIES)
    assert all(f"<h3 id='{name}'>" in page for name in ENTRIES)
    embedded = {base64.b64decode(source.split(",", 1)[1]) for source in sources}
    assert (out / "loss_curves.png").read_bytes() in embedded
    assert (out / "samples.png").read_bytes() in embedded
    assert (out / "pictures" / "mlp-worst.png").read_bytes() in embedded
    for name in (*ENTRIES, "bayes-rule", "MSE / Bayes", "Test MSE per seed", "the points task"):
        assert name in page
    report = (out / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / link).is_file(), link
    assert "Best possible test MSE (Bayes reference): " in report


def test_bad_input_is_refused_before_any_work(tiny_folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Img2NumError, match="unknown model 'vgg'; known models: mlp, cnn"):
        compare(tiny_folder, ["mlp", "vgg"], out_dir=out)
    with pytest.raises(Img2NumError, match="number of seeds must be a whole number of at least 1, got 0"):
        compare(tiny_folder, ["mlp"], out_dir=out, seeds=0)
    with pytest.raises(Img2NumError, match="model 'mlp' is named twice"):
        compare(tiny_folder, ["mlp", "mlp"], out_dir=out)
    with pytest.raises(Img2NumError, match="needs at least one model"):
        compare(tiny_folder, [], out_dir=out)
    with pytest.raises(Img2NumError, match="reference MSE must be a positive number"):
        compare(tiny_folder, ["mlp"], out_dir=out, reference_mse=-1.0)
    with pytest.raises(Img2NumError, match="missing.npz: no such file"):
        compare(tmp_path / "missing.npz", ["mlp"], out_dir=out)
    two = Dataset(np.zeros((2, 4, 4, 1)), np.array([1.0, 2.0]), "two.npz")
    with pytest.raises(Img2NumError, match="two.npz: 2 training samples are too few to hold out a test share"):
        compare(two, ["mlp"], val=two, out_dir=out)
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(Img2NumError, match="already exists; pass --overwrite"):
        compare(tiny_folder, ["mlp"], out_dir=out)
    assert (out / "mine.txt").read_text() == "keep"


def test_reference_comes_from_the_caller_then_the_task():
    assert _reference({"task": "points", "reference_mse": 47.7}, None) == 47.7
    assert _reference({"task": "points", "reference_mse": 47.7}, 10) == 10
    assert _reference(None, None) is None and _reference({"task": "x", "reference_mse": None}, None) is None
    with pytest.raises(Img2NumError, match="reference MSE must be a positive number, got 0"):
        _reference(None, 0)


def test_a_test_share_is_held_out_when_the_data_has_none(tiny_folder):
    splits = _splits(tiny_folder / "train.npz", None, None, 0.2, 0.25, seed=1)
    assert list(splits) == ["train", "val", "test"]
    assert [len(split) for split in splits.values()] == [96, 32, 32]
    assert splits["test"].source.endswith("(held-out test share)")
    again = _splits(tiny_folder / "train.npz", None, None, 0.2, 0.25, seed=1)
    assert np.array_equal(again["test"].x, splits["test"].x)
    assert not np.array_equal(_splits(tiny_folder / "train.npz", None, None, 0.2, 0.25, seed=2)["test"].x, splits["test"].x)
    folder = _splits(tiny_folder, None, None, 0.2, 0.25, seed=1)
    assert [len(split) for split in folder.values()] == [160, 40, 30]


def test_command_line_errors_are_one_line(capsys, tiny_folder, tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    assert main(["compare", str(tiny_folder), "--models", "mlp", "--quiet", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"img2num: error: {out}: already exists; pass --overwrite to replace it"
    with pytest.raises(SystemExit) as caught:
        main(["compare", str(tiny_folder), "--seeds", "0"])
    assert caught.value.code == 2
    assert "argument --seeds: expected a whole number of at least 1, got '0'" in capsys.readouterr().err
    status = main(["compare", str(tiny_folder), "--models", "mlp,vgg", "--out", str(tmp_path / "other")])
    err = capsys.readouterr().err
    assert status == 1 and err.strip().startswith("img2num: error: unknown model 'vgg'; known models: mlp, cnn")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()


def test_compare_on_a_folder_of_image_files_uses_its_splits_and_task(capsys, tmp_path):
    size = ["--height", "8", "--width", "8", "--train-size", "40", "--val-size", "10", "--test-size", "12"]
    assert main(["generate", str(tmp_path / "pts"), "--format", "images", *size]) == 0
    out = tmp_path / "cmp"
    argv = ["compare", str(tmp_path / "pts"), "--models", "mlp", "--epochs", "1", "--no-runs", "--workers", "1"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {name: split["samples"] for name, split in results["data"]["splits"].items()} == {
        "train": 40, "val": 10, "test": 12
    }
    assert results["reference_mse"] == pytest.approx(points_bayes_reference(8, 8).mse)
    names = {row["name"] for row in results["leaderboard"]}
    assert names == {"mlp", "mean-baseline", "ridge-baseline", "bayes-rule"}
    assert "test MSE" in capsys.readouterr().out


def test_reports_show_interval_coverage_per_model(compared):
    summary, out, _ = compared
    records = [entry["intervals"] for entry in summary["entries"] if entry["name"] == "mlp"]
    assert len(records) == len(SEEDS) and all(0 <= r["0.9"]["coverage"] <= 1 for r in records)
    for page in ((out / "report.html").read_text(), (out / "report.md").read_text()):
        assert "Prediction intervals" in page and "coverage 90%" in page
