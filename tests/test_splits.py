"""Held-out splits that keep correlated images apart: whole groups, the latest times, a gap, the
record of how validation was drawn, and every error of a group or time column as one line."""

import csv
import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli, with_columns, write_photos

from img2num.comparison import _splits as compare_splits
from img2num.config import DataConfig
from img2num.data import draw_held_out, read_image_table, resolve_splits, split_records
from img2num.errors import Img2NumError
from img2num.metrics import few_groups_warning


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """40 images of 10 cameras (4 each, rows interleaved) with a day each: day = row // 2 + 1."""
    path = write_photos(tmp_path_factory.mktemp("cameras") / "data", count=40, size=(6, 6))
    return with_columns(
        path,
        camera=[f"cam{i % 10}" for i in range(40)],
        day=[f"2024-03-{i // 2 + 1:02d}" for i in range(40)],
    )


def _groups(splits):
    return {name: set(split.groups) for name, split in splits.items()}


def test_whole_groups_go_to_one_split_seeded_and_rounded(cameras):
    options = DataConfig(group_column="camera", test_fraction=0.3)
    first = resolve_splits(cameras, val_fraction=0.2, seed=5, options=options)
    # 10 groups: test 3 groups, validation 2, training the other 5; every group in one split.
    assert {name: len(found) for name, found in _groups(first).items()} == {"train": 5, "val": 2, "test": 3}
    assert {name: len(split) for name, split in first.items()} == {"train": 20, "val": 8, "test": 12}
    found = _groups(first)
    assert not (found["train"] & found["val"] or found["train"] & found["test"] or found["val"] & found["test"])
    assert set().union(*found.values()) == {f"cam{i}" for i in range(10)}
    for split in first.values():  # each row keeps its own group
        assert all(int(path[-7:-4]) % 10 == int(group[3:]) for path, group in zip(split.paths, split.groups))
    again = resolve_splits(cameras, val_fraction=0.2, seed=5, options=options)
    other = resolve_splits(cameras, val_fraction=0.2, seed=6, options=options)
    assert _groups(again) == found and _groups(other) != found
    assert first.validation == {
        "drawn": "groups",
        "seed": 5,
        "group_column": "camera",
        "groups": {"train": 5, "val": 2, "test": 3},
    }


def test_the_draw_does_not_depend_on_the_order_of_rows(cameras, tmp_path):
    with open(cameras, newline="") as handle:
        rows = list(csv.reader(handle))
    folder = cameras.parent
    reversed_csv = folder / "reversed.csv"
    with open(reversed_csv, "w", newline="") as handle:
        csv.writer(handle).writerows([rows[0]] + rows[:0:-1])
    options = DataConfig(group_column="camera")
    assert _groups(resolve_splits(reversed_csv, seed=2, options=options)) == _groups(resolve_splits(cameras, seed=2, options=options))


def test_numeric_groups_compare_as_their_trimmed_text(tmp_path):
    path = write_photos(tmp_path / "d", count=12, size=(4, 4))
    with_columns(path, site=[" 1", "1 ", "2", "2", "10", "10", "3", "3", "1.0", "1.0", "4", "4"])
    splits = resolve_splits(path, val_fraction=0.3, seed=0, options=DataConfig(group_column="site"))
    found = _groups(splits)
    # Six groups: "1" (trimmed twice), "2", "10", "3", "1.0" (not "1") and "4"; 0.3 of 6 is 2.
    assert found["train"] | found["val"] == {"1", "2", "10", "3", "1.0", "4"} and len(found["val"]) == 2
    assert not found["train"] & found["val"]
    ones = [split for split in splits.values() if "1" in split.groups][0]
    assert sum(g == "1" for g in ones.groups) == 2


def test_a_split_column_wins_and_groups_are_only_recorded(tmp_path):
    path = write_photos(tmp_path / "d", count=20, size=(4, 4), split=True)
    with_columns(path, camera=[f"c{i % 5}" for i in range(20)])
    splits = resolve_splits(path, options=DataConfig(group_column="camera", test_fraction=0.4))
    assert {name: len(split) for name, split in splits.items()} == {"train": 12, "val": 4, "test": 4}
    assert splits["val"].groups == ("c2", "c3", "c4", "c0")
    assert splits.validation == {
        "drawn": "split column",
        "group_column": "camera",
        "groups": {"train": 5, "val": 4, "test": 4},
        "groups_in_several_splits": 5,
    }


def test_given_validation_data_is_recorded_as_given(cameras):
    table = read_image_table(cameras, DataConfig(group_column="camera"))
    splits = resolve_splits(table.data, val=table.data.take(np.arange(8)), options=DataConfig())
    assert splits.validation == {"drawn": "given", "groups": {"train": 10, "val": 8}, "groups_in_several_splits": 8}


def test_latest_dates_are_validation_and_test(cameras):
    splits = resolve_splits(cameras, val_fraction=0.2, seed=0, options=DataConfig(time_column="day", test_fraction=0.2))
    assert {name: len(split) for name, split in splits.items()} == {"train": 24, "val": 8, "test": 8}
    assert (max(splits["train"].times), min(splits["val"].times)) == ("2024-03-12", "2024-03-13")
    assert (max(splits["val"].times), min(splits["test"].times)) == ("2024-03-16", "2024-03-17")
    assert splits.validation == {"drawn": "time", "time_column": "day"}


def test_equal_times_never_straddle_a_split(tmp_path):
    path = write_photos(tmp_path / "d", count=10, size=(4, 4))
    # A random split would put 2 rows in validation; the latest time has 3 rows, all kept together.
    with_columns(path, t=["1", "2", "2", "3", "3", "4", "5", "7", "7", "7"])
    splits = resolve_splits(path, val_fraction=0.2, options=DataConfig(time_column="t"))
    assert splits["val"].times == ("7", "7", "7") and "7" not in splits["train"].times
    splits = resolve_splits(path, val_fraction=0.4, options=DataConfig(time_column="t"))
    assert splits["val"].times == ("5", "7", "7", "7")


def test_date_times_and_numbers_order_in_time_and_the_gap_drops_rows_before(tmp_path):
    path = write_photos(tmp_path / "d", count=12, size=(4, 4))
    hours = [f"2024-05-01T{h:02d}:00:00" for h in (11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    with_columns(path, taken=hours, step=[str(h) for h in (11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)])
    for options in (
        DataConfig(time_column="taken", gap="2h", test_fraction=0.25),
        DataConfig(time_column="taken", gap=7200, test_fraction=0.25),
        DataConfig(time_column="step", gap=2, test_fraction=0.25),
    ):
        splits = resolve_splits(path, val_fraction=0.25, options=options)
        hour = {"taken": lambda text: int(text[11:13]), "step": int}[options.time_column]
        # Test hours 9-11, validation 6-8 less hour 8 (within 2 h of 9), training 0-5 less hour 5
        # (within 2 h of 6); hour 4 is 2 h before 6, not within.
        assert {name: sorted(map(hour, split.times)) for name, split in splits.items()} == {
            "train": [0, 1, 2, 3, 4], "val": [6, 7], "test": [9, 10, 11]
        }  # fmt: skip
        assert splits.validation["dropped_by_gap"] == {"train": 1, "val": 1}
    with pytest.raises(Img2NumError, match=r"labels.csv: a gap of 12h leaves no training rows; lower --gap"):
        resolve_splits(path, options=DataConfig(time_column="taken", gap="12h"))
    with pytest.raises(Img2NumError, match=r"gap '2h' has a unit but time column 'step' holds plain numbers; give the gap in the column's own units"):
        resolve_splits(path, options=DataConfig(time_column="step", gap="2h"))


def test_groups_and_time_hold_out_the_latest_groups(cameras):
    splits = resolve_splits(cameras, val_fraction=0.2, options=DataConfig(group_column="camera", time_column="day", test_fraction=0.2))
    # cam_k first appears on day k // 2 + 1: the latest cameras to start are 8 and 9, then 6 and 7.
    assert _groups(splits) == {"train": {f"cam{i}" for i in range(6)}, "val": {"cam6", "cam7"}, "test": {"cam8", "cam9"}}
    assert splits.validation["drawn"] == "groups and time" and "seed" not in splits.validation


def test_split_csv_records_group_and_time_and_reproduces_the_splits(cameras, tmp_path):
    options = DataConfig(group_column="camera", time_column="day", test_fraction=0.2)
    splits = resolve_splits(cameras, options=options)
    text = split_records(splits)["split.csv"]
    (tmp_path / "split.csv").write_text(text)
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == ["path", "label", "split", "group", "time"] and len(rows) == 40
    assert {r["group"] for r in rows if r["split"] == "test"} == {"cam8", "cam9"}
    again = resolve_splits(tmp_path / "split.csv", options=DataConfig(group_column="group", time_column="time"))
    assert {name: split.paths for name, split in again.items()} == {name: split.paths for name, split in splits.items()}
    assert again.validation["drawn"] == "split column"


def test_compare_records_how_validation_was_drawn(cameras):
    splits = compare_splits(cameras, None, None, 0.2, 0.2, 1, DataConfig(group_column="camera"))
    assert splits.validation == {"drawn": "groups", "seed": 1, "group_column": "camera", "groups": {"train": 6, "val": 2, "test": 2}}
    assert not set(splits["test"].groups) & set(splits["train"].groups)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            DataConfig(group_column="site"),
            r"^\S+labels.csv: has no column 'site' \(found: file, label, camera, day\); choose one with --group-column$",
        ),
        (
            DataConfig(time_column="when"),
            r"^\S+labels.csv: has no column 'when' \(found: file, label, camera, day\); choose one with --time-column$",
        ),
        (
            DataConfig(group_column="camera", test_fraction=0.5),
            r"labels.csv: 10 groups in column 'camera' are too few: training, validation and test need at least 1, 5 and 5 "
            r"groups \(11 in all\); give more groups or lower the held-out shares$",
        ),
    ],
)
def test_missing_columns_and_too_few_groups_are_one_line(cameras, options, message):
    with pytest.raises(Img2NumError, match=message):
        resolve_splits(cameras, val_fraction=0.5, options=options)


def test_too_few_groups_names_what_each_split_needs(tmp_path):
    path = write_photos(tmp_path / "d", count=6, size=(4, 4))
    with_columns(path, camera=["a", "a", "b", "b", "a", "b"])
    with pytest.raises(Img2NumError) as caught:
        resolve_splits(path, options=DataConfig(group_column="camera", test_fraction=0.2))
    assert str(caught.value) == (
        f"{path}: 2 groups in column 'camera' are too few: training, validation and test need at least 1, 1 and 1 "
        "groups (3 in all); give more groups or lower the held-out shares"
    )
    with_columns(path, t=["1"] * 6)
    with pytest.raises(Img2NumError, match=r"1 distinct times in column 't' are too few: training and validation need at least 1 and 1"):
        resolve_splits(path, options=DataConfig(time_column="t"))


def test_empty_or_unreadable_cells_are_bad_rows(tmp_path):
    path = write_photos(tmp_path / "d", count=12, size=(4, 4))
    with_columns(path, camera=["a", "b", "c", "", "a", "b", "c", "a", "b", "c", "a", "b"], t=[str(i) for i in range(11)] + ["soon"])
    with pytest.raises(Img2NumError) as caught:
        resolve_splits(path, options=DataConfig(group_column="camera"))
    assert str(caught.value) == f"{path} row 5: img/003.png: empty 'camera' cell"
    with pytest.raises(Img2NumError) as caught:
        resolve_splits(path, options=DataConfig(time_column="t"))
    assert str(caught.value) == (
        f"{path} row 13: img/011.png: t 'soon' is not an ISO date (2024-05-31), ISO date-time (2024-05-31T14:30:00) or plain number"
    )
    splits = resolve_splits(path, options=DataConfig(group_column="camera", time_column="t", skip_bad=True))
    assert [row.where for row in splits.skipped] == [f"{path} row 5", f"{path} row 13"]
    assert sum(len(s) for s in splits.values()) == 10 and "" not in splits["train"].groups


def test_a_time_column_holds_one_kind(tmp_path):
    path = write_photos(tmp_path / "d", count=4, size=(4, 4))
    with_columns(path, t=["2024-01-01", "2024-01-02", "2024-01-02T10:00", "2024-01-04"])
    with pytest.raises(Img2NumError) as caught:
        resolve_splits(path, options=DataConfig(time_column="t", skip_bad=True))
    assert str(caught.value) == (
        f"{path} row 4: time '2024-01-02T10:00' is a date-time but row 2 holds a date ('2024-01-01'); "
        "a time column holds one kind: ISO dates, ISO date-times or plain numbers"
    )


def test_arrays_have_no_columns(tiny_folder):
    with pytest.raises(Img2NumError, match=r"train.npz: --group-column camera needs a label CSV naming image files; arrays have no columns"):
        resolve_splits(tiny_folder, options=DataConfig(group_column="camera"))
    with pytest.raises(Img2NumError, match=r"--time-column day needs a label CSV"):
        resolve_splits(tiny_folder / "train.npz", options=DataConfig(time_column="day"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"gap": 3}, "a gap needs a time column (--time-column NAME)"),
        ({"time_column": "t", "gap": "3 weeks"}, "gap must be a number of at least 0, or a duration such as 30s, 15min, 6h or 2d; got '3 weeks'"),
        ({"time_column": "t", "gap": -1}, "gap must be a number of at least 0, got -1"),
        ({"group_column": " "}, "group column must be a column name, got ' '"),
    ],
)
def test_bad_settings_are_one_line(settings, message):
    with pytest.raises(Img2NumError) as caught:
        DataConfig(**settings)
    assert str(caught.value) == message


def test_draw_held_out_needs_groups_or_times(cameras):
    data = read_image_table(cameras).data
    with pytest.raises(ValueError, match="needs data with groups or times"):
        draw_held_out(data, 0.2, 0.0, 0)


FEW_VAL_GROUPS = (
    "validation holds 2 of 10 'camera' groups: its scores rest on them and may not carry to other groups; see the "
    "spread over groups with img2num compare DATA --group-column camera --cv groups, or hold out more "
    "(--val-fraction) (docs/groups.md)"
)


def test_validation_of_fewer_than_three_groups_is_said_to_rest_on_them():
    record = {"drawn": "groups", "group_column": "camera", "groups": {"train": 6, "val": 2, "test": 2}}
    assert few_groups_warning(record) == FEW_VAL_GROUPS
    assert "holds 1 of 8 'camera' groups: its scores rest on it " in few_groups_warning(record | {"groups": {"train": 6, "val": 1, "test": 1}})
    assert few_groups_warning(record | {"groups": {"train": 6, "val": 3, "test": 2}}) is None
    assert few_groups_warning({"drawn": "random", "seed": 0}) is None


def test_train_and_evaluate_with_a_group_column_end_to_end(cameras, tmp_path, capsys):
    run = tmp_path / "run"
    status, out, err = run_cli(
        capsys, "train", cameras, "--group-column", "camera", "--time-column", "day", "--gap", "1d",
        "--model", "mlp", "--epochs", "1", "--test-fraction", "0.2", "--run", run, "--quiet", "--no-pictures",
    )  # fmt: skip
    assert status == 0, err
    assert "img2num: --gap dropped 18 train rows and 6 val rows" in err.splitlines()
    validation = json.loads((run / "config.json").read_text())["data"]["validation"]
    assert validation == {
        "drawn": "groups and time",
        "dropped_by_gap": {"train": 18, "val": 6},
        "group_column": "camera",
        "time_column": "day",
        "gap": "1d",
        "groups": {"train": 6, "val": 2, "test": 2},
        "warning": FEW_VAL_GROUPS,
    }
    with open(run / "split.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and {r["group"] for r in rows if r["split"] == "val"} == {"cam6", "cam7"}
    status, out, err = run_cli(capsys, "evaluate", run, cameras, "--group-column", "camera")
    assert status == 0, err
    status, _, err = run_cli(capsys, "evaluate", run, cameras, "--group-column", "site")
    assert status != 0 and "has no column 'site' (found: file, label, camera, day); choose one with --group-column" in one_line_error(err)
    with pytest.raises(SystemExit) as caught:
        run_cli(capsys, "train", cameras, "--gap", "soon", "--time-column", "day")
    line = capsys.readouterr().err.strip()
    assert caught.value.code == 2 and "\n" not in line
    assert "argument --gap: gap must be a number of at least 0, or a duration such as 30s, 15min, 6h or 2d; got 'soon'" in line
