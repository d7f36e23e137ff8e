"""Results per group: `evaluate --by`, the per-group table and picture of `compare`, and
`compare --cv groups` (folds of whole groups, each tested once)."""

import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli, with_columns, write_photos

from img2num.comparison import compare
from img2num.config import DataConfig, TrainConfig
from img2num.crossval import fold_splits, group_folds
from img2num.data import read_image_table
from img2num.errors import Img2NumError
from img2num.evaluation import evaluate, evaluation_record
from img2num.metrics import format_group_metrics, metrics_by_group, regression_metrics


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """40 images 8x8: 39 rows of 6 cameras cam0..cam5 (rows interleaved), and one of camera solo."""
    path = write_photos(tmp_path_factory.mktemp("bygroup") / "data", count=40, size=(8, 8))
    return with_columns(path, camera=[f"cam{i % 6}" for i in range(39)] + ["solo"])


@pytest.fixture(scope="module")
def run(cameras, tmp_path_factory):
    from img2num.training import train

    return train(
        cameras, TrainConfig(model="mlp", epochs=2, seed=1), data_options=DataConfig(test_fraction=0.2),
        run_dir=tmp_path_factory.mktemp("runs") / "mlp", quiet=True,
    )  # fmt: skip


def test_metrics_by_group_equal_each_groups_own_metrics_worst_first():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 9.0])
    p = np.array([1.5, 2.0, 1.0, 4.0, 5.0, 6.0, 9.0])
    groups = ["a", "a", "b", "b", "c", "c", "d"]
    rows = metrics_by_group(y, p, groups)
    assert [row["group"] for row in rows] == ["b", "c", "a", "d"]  # MSE 2.0, 0.5, 0.125, 0.0
    for row in rows:
        mine = np.array(groups) == row["group"]
        expected = regression_metrics(y[mine], p[mine])
        assert row["samples"] == mine.sum()
        for name in ("mse", "rmse", "mae"):
            assert row[name] == pytest.approx(expected[name])
    assert rows[0]["mse"] == pytest.approx(2.0) and rows[0]["r2"] == pytest.approx(1 - 4 / 0.5)
    assert np.isnan(rows[-1]["r2"])  # one label: no spread
    table = format_group_metrics(rows, "camera").splitlines()
    assert table[0].split() == ["camera", "samples", "mse", "rmse", "mae", "r2"]
    assert table[1].split() == ["b", "2", "2.0000", "1.4142", "1.0000", "-7.0000"]
    assert table[-1].split() == ["d", "1", "0.0000", "0.0000", "0.0000", "undefined"]
    with pytest.raises(ValueError, match="equal, non-empty"):
        metrics_by_group([1.0], [1.0], ["a", "b"])


def test_evaluate_by_a_column_scores_each_group_and_saves_it(run, cameras, tmp_path):
    record = evaluation_record(run, cameras, by="camera")
    data = read_image_table(cameras, DataConfig(group_column="camera"), run.preprocessing.image_spec()).data
    predictions = run.predict_data(data)
    groups = np.array(data.groups)
    by_group = record["by_group"]
    assert by_group["column"] == "camera"
    assert {row["group"] for row in by_group["groups"]} == {f"cam{i}" for i in range(6)} | {"solo"}
    for row in by_group["groups"]:
        mine = groups == row["group"]
        expected = regression_metrics(data.y[mine], predictions[mine])
        assert row["samples"] == mine.sum()
        assert row["mse"] == pytest.approx(expected["mse"]) and row["mae"] == pytest.approx(expected["mae"])
        assert row["r2"] == pytest.approx(expected["r2"], nan_ok=True)
    mses = [row["mse"] for row in by_group["groups"]]
    assert mses == sorted(mses, reverse=True)
    # Overall metrics unchanged by --by.
    assert record["mse"] == pytest.approx(regression_metrics(data.y, predictions)["mse"])
    returned = evaluate(run, cameras, output=tmp_path / "e.json", by="camera")
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["by_group"]["column"] == "camera"
    assert [row["group"] for row in returned["by_group"]["groups"]] == [row["group"] for row in by_group["groups"]]
    assert [row["group"] for row in saved["by_group"]["groups"]] == [row["group"] for row in by_group["groups"]]
    assert next(row for row in saved["by_group"]["groups"] if row["group"] == "solo")["r2"] is None


def test_evaluate_by_prints_the_table_after_the_metrics(run, cameras, capsys, tmp_path):
    status, out, err = run_cli(capsys, "evaluate", run.path, cameras, "--by", "camera", "--output", tmp_path / "m.json")
    assert status == 0, err
    lines = out.splitlines()
    start = lines.index("per camera, worst MSE first:")
    assert lines[0].startswith("mse ") and lines.index("r2" + lines[3][2:]) < start
    rows = [line.split() for line in lines[start + 2 : start + 9]]
    assert lines[start + 1].split() == ["camera", "samples", "mse", "rmse", "mae", "r2"]
    saved = json.loads((tmp_path / "m.json").read_text())["by_group"]["groups"]
    assert [row[0] for row in rows] == [row["group"] for row in saved]
    assert [float(row[2]) for row in rows] == [round(row["mse"], 4) for row in saved]
    assert next(row for row in rows if row[0] == "solo")[-1] == "undefined"


def test_evaluate_by_errors_are_one_line(run, cameras, tiny_folder, capsys, tmp_path):
    status, _, err = run_cli(capsys, "evaluate", run.path, cameras, "--by", "site")
    assert status != 0
    assert one_line_error(err).endswith("labels.csv: has no column 'site' to score by (found: file, label, camera); choose one with --by")
    status, _, err = run_cli(capsys, "evaluate", run.path, tiny_folder / "test.npz", "--by", "camera")
    assert status != 0 and one_line_error(err).endswith("test.npz: --by camera needs a label CSV naming image files; arrays have no columns")
    status, _, err = run_cli(capsys, "evaluate", run.path, cameras, "--by", "camera", "--group-column", "label")
    assert status != 0 and "--by camera and --group-column label name different columns" in one_line_error(err)
    # An empty cell is a bad row, as elsewhere: named, or skipped with --skip-bad.
    holes = write_photos(tmp_path / "holes", count=6, size=(8, 8))
    with_columns(holes, camera=["a", "a", "", "b", "b", "b"])
    status, _, err = run_cli(capsys, "evaluate", run.path, holes, "--by", "camera")
    assert status != 0 and one_line_error(err).endswith("labels.csv row 4: img/002.png: empty 'camera' cell")
    status, out, err = run_cli(capsys, "evaluate", run.path, holes, "--by", "camera", "--skip-bad", "--output", tmp_path / "h.json")
    assert status == 0, err
    groups = json.loads((tmp_path / "h.json").read_text())["by_group"]["groups"]
    assert {row["group"]: row["samples"] for row in groups} == {"a": 2, "b": 3}


def test_compare_with_a_group_column_shows_each_test_group(cameras, tmp_path):
    summary = compare(
        cameras, ["mlp"], out_dir=tmp_path / "c", epochs=2, options=DataConfig(group_column="camera"), quiet=True,
        keep_runs=False, seed=3,
    )  # fmt: skip
    folder = tmp_path / "c"
    results = json.loads((folder / "results.json").read_text())
    tested = {g for g in results["by_group"]["groups"]}
    assert results["by_group"]["column"] == "camera" and results["by_group"]["split"] == "test"
    assert sum(results["by_group"]["samples"].values()) == results["data"]["splits"]["test"]["samples"]
    assert set(results["by_group"]["scores"]) == {"mlp", "mean-baseline", "ridge-baseline"}
    # The mean baseline predicts the training mean: its per-group MSE by hand.
    from img2num.comparison import _splits

    splits = _splits(cameras, None, None, 0.2, 0.2, 3, DataConfig(group_column="camera"))
    assert tested == set(splits["test"].groups)
    mean = splits["train"].y.astype(np.float64).mean()
    for group in tested:
        mine = np.array(splits["test"].groups) == group
        expected = np.mean((splits["test"].y[mine] - mean) ** 2)
        assert results["by_group"]["scores"]["mean-baseline"][group]["mse"] == pytest.approx(expected, rel=1e-5)
    order = results["by_group"]["groups"]
    mlp = [results["by_group"]["scores"]["mlp"][g]["mse"] for g in order]
    assert summary["best"] != "mlp" or mlp == sorted(mlp, reverse=True)
    assert (folder / "pictures" / "by-group.png").stat().st_size > 1000
    markdown = (folder / "report.md").read_text()
    assert "## Results per camera" in markdown and "![test MSE per group](pictures/by-group.png)" in markdown
    groups = results["data"]["validation"]["groups"]
    drawn = ", ".join(f"{count} {name}" for name, count in groups.items())
    assert f"Held-out shares are whole groups of column 'camera' ({drawn}), seed 3." in markdown
    assert "| camera | samples | " in markdown and all(f"| {group} | " in markdown for group in tested)
    html = (folder / "report.html").read_text()
    assert "<h2>Results per camera</h2>" in html and html.count("data:image/png;base64,") >= 5


def test_group_folds_test_every_group_once_and_never_train_on_it(cameras):
    groups = [f"g{i}" for i in range(7)]
    assert group_folds(groups, 10, 0) == [[g] for g in groups]  # leave-one-group-out
    folds = group_folds(groups * 3, 3, 1)
    assert len(folds) == 3 and sorted(g for fold in folds for g in fold) == groups
    assert sorted(len(fold) for fold in folds) == [2, 2, 3] and folds == group_folds(groups, 3, 1)
    data = read_image_table(cameras, DataConfig(group_column="camera")).data.to_dataset()
    rounds = fold_splits(data, 4, 0.2, 0, DataConfig(group_column="camera"))
    tested = [set(splits["test"].groups) for splits in rounds]
    assert len(rounds) == 4 and sorted(g for found in tested for g in found) == sorted(set(data.groups))
    for splits, found in zip(rounds, tested):
        assert not found & (set(splits["train"].groups) | set(splits["val"].groups))
        assert not set(splits["train"].groups) & set(splits["val"].groups)
        assert sum(len(split) for split in splits.values()) == len(data)
        assert splits.validation["test_groups"] == sorted(found)


def test_cross_validation_by_groups_summarises_its_folds(cameras, tmp_path, capsys):
    out = tmp_path / "cv"
    status, printed, err = run_cli(
        capsys, "compare", cameras, "--models", "mlp", "--epochs", "1", "--group-column", "camera", "--cv", "groups",
        "--folds", "3", "--out", out, "--quiet", "--no-runs",
    )  # fmt: skip
    assert status == 0, err
    results = json.loads((out / "results.json").read_text())
    folds = results["cv"]["folds"]
    assert len(folds) == 3 and sorted(g for fold in folds for g in fold["test_groups"]) == sorted({f"cam{i}" for i in range(6)} | {"solo"})
    for row in results["leaderboard"]:
        per_fold = [
            np.mean([e["metrics"]["test"]["mse"] for e in results["entries"] if e["name"] == row["name"] and e["fold"] == k])
            for k in (1, 2, 3)
        ]
        assert row["fold_mse"] == pytest.approx(per_fold)
        assert row["test_mse"] == pytest.approx(np.mean(per_fold))
        assert row["test_mse_sd"] == pytest.approx(np.std(per_fold, ddof=1))
        r2 = [e["metrics"]["test"]["r2"] for e in results["entries"] if e["name"] == row["name"]]
        assert row["test_r2"] == pytest.approx(np.mean([v for v in r2 if v is not None]))
    assert [row["test_mse"] for row in results["leaderboard"]] == sorted(row["test_mse"] for row in results["leaderboard"])
    by_group = results["by_group"]
    assert sorted(by_group["groups"]) == sorted({f"cam{i}" for i in range(6)} | {"solo"})
    assert set(by_group["scores"]) == {"mlp", "mean-baseline", "ridge-baseline"}
    lines = printed.splitlines()
    assert any(line.startswith("mlp ") and "over 3 folds" in line for line in lines)
    assert (out / "pictures" / "by-group.png").stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert "## Folds" in markdown and "## Results per camera" in markdown and "test MSE (mean ± sd over 3 folds)" in markdown
    assert "<h2>Results per camera</h2>" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cv": "groups"}, r"^--cv groups needs a group column \(--group-column NAME\)$"),
        ({"cv": "random", "options": DataConfig(group_column="camera")}, r"^unknown cross-validation 'random'; known: groups$"),
        ({"cv": "groups", "folds": 1, "options": DataConfig(group_column="camera")}, r"folds must be a whole number of at least 2, got 1$"),
        ({"cv": "groups", "test": "x.csv", "options": DataConfig(group_column="camera")}, r"leave out --val and --test$"),
    ],
)
def test_cross_validation_settings_are_one_line(cameras, tmp_path, kwargs, message):
    with pytest.raises(Img2NumError, match=message):
        compare(cameras, ["mlp"], out_dir=tmp_path / "x", quiet=True, **kwargs)
    assert not (tmp_path / "x").exists()


def test_cross_validation_needs_three_groups_and_no_split_column(tmp_path, tiny_folder):
    few = with_columns(write_photos(tmp_path / "few", count=6, size=(8, 8)), camera=["a", "a", "a", "b", "b", "b"])
    options = DataConfig(group_column="camera")
    with pytest.raises(Img2NumError, match=r"2 groups in column 'camera' are too few to cross-validate; each fold needs one to test"):
        compare(few, ["mlp"], out_dir=tmp_path / "x", quiet=True, cv="groups", options=options)
    three = with_columns(write_photos(tmp_path / "three", count=6, size=(8, 8)), camera=["a", "a", "b", "b", "c", "c"])
    with pytest.raises(Img2NumError, match=r"2 folds of 3 groups leave a single group for training and validation; raise --folds$"):
        compare(three, ["mlp"], out_dir=tmp_path / "x", quiet=True, cv="groups", folds=2, options=options)
    split = with_columns(write_photos(tmp_path / "split", count=6, size=(8, 8), split=True), camera=list("aabbcc"))
    with pytest.raises(Img2NumError, match=r"has a 'split' column, but --cv groups draws every split itself"):
        compare(split, ["mlp"], out_dir=tmp_path / "x", quiet=True, cv="groups", options=options)
    with pytest.raises(Img2NumError, match=r"train.npz: --cv groups needs a label CSV with a group column"):
        compare(tiny_folder / "train.npz", ["mlp"], out_dir=tmp_path / "x", quiet=True, cv="groups", options=options)
