"""The command line end to end, in temporary folders, and every user error as one line."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, run_cli

from img2num.bundle import load_run
from img2num.cli import build_parser, main
from img2num.cli.train import _train_config
from img2num.config import TrainConfig
from img2num.data import load_dataset
from img2num.models import create_model

TINY_DATA = ["--height", "8", "--width", "8", "--train-size", "64", "--val-size", "16", "--test-size", "25"]


def test_help_models_and_generate_do_not_import_keras(tmp_path):
    code = (
        "import sys; from img2num.cli import main\n"
        "assert main(['models']) == 0\n"
        f"assert main(['generate', {str(tmp_path / 'd')!r}, '--train-size', '5', '--val-size', '2', '--test-size', '2']) == 0\n"
        "print('heavy:', sorted(m for m in ('keras', 'jax', 'torch', 'tensorflow', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[0].startswith("mlp ")
    assert result.stdout.splitlines()[1].startswith("cnn ")
    assert (tmp_path / "d" / "train.npz").exists()
    assert result.stdout.splitlines()[-1] == "heavy: []"


def test_train_without_pictures_imports_no_torch_nor_plotting_and_caches_compilation(tmp_path, tiny_folder):
    # keras_hub (about 5 s to import) only when a pretrained backbone is trained; no scikit-learn
    # (Keras would import it for wrappers img2num does not use).
    code = (
        "import sys; from img2num.cli import main\n"
        f"assert main(['train', {str(tiny_folder)!r}, '--model', 'mlp', '--epochs', '2', '--backend', 'jax', "
        f"'--run', {str(tmp_path / 'run')!r}, '--quiet', '--no-pictures']) == 0\n"
        "print('heavy:', sorted(m for m in ('torch', 'tensorflow', 'keras_hub', 'sklearn', 'matplotlib.pyplot', 'matplotlib.figure') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "IMG2NUM_JAX_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy: []"
    written = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert written == [".img2num", "calibration.json", "config.json", "history.csv", "metrics.json", "model.keras"]
    # The compiled programs were kept for the next run of the same model and shapes.
    assert len(list((tmp_path / "cache").iterdir())) >= 2


def test_module_and_console_script_answer_help():
    result = subprocess.run([sys.executable, "-m", "img2num", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("generate", "models", "train", "evaluate", "predict", "explain", "serve", "recipe"):
        assert command in result.stdout
    script = Path(sys.executable).parent / "img2num"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("img2num ")


def test_generate_writes_three_splits_and_never_overwrites(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "generate", tmp_path / "d", *TINY_DATA, "--data-seed", "4")
    assert status == 0
    assert out.splitlines() == [f"{s}: {tmp_path / 'd' / s}.npz" for s in ("train", "val", "test")]
    train = load_dataset(tmp_path / "d" / "train.npz")
    assert train.x.shape == (64, 8, 8, 1) and train.y.shape == (64,)
    status, _, err = run_cli(capsys, "generate", tmp_path / "d", *TINY_DATA)
    assert status == 1
    assert "train.npz: already exists; pass --overwrite" in one_line_error(err)
    assert np.array_equal(load_dataset(tmp_path / "d" / "train.npz").x, train.x)


def test_train_numbers_its_runs_and_evaluate_and_predict_reproduce_the_test_mse(capsys, tmp_path, tiny_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "train", tiny_folder, "--model", "cnn", "--epochs", "2", "--seed", "3")
    assert status == 0, err
    assert "cnn epoch 2/2" in err
    assert out.splitlines()[-1] == "run saved in runs/cnn"
    assert "[test]" in out and "rmse" in out
    status, out, _ = run_cli(capsys, "train", tiny_folder, "--model", "cnn", "--epochs", "1", "--quiet")
    assert status == 0
    assert out.splitlines()[-1] == "run saved in runs/cnn-2"

    status, out, _ = run_cli(capsys, "evaluate", "runs/cnn", tiny_folder / "test.npz")
    assert status == 0
    saved = json.loads(Path("runs/cnn/evaluations/test.json").read_text())
    assert out.splitlines()[0] == f"mse   {saved['mse']:.4f}"
    assert saved["mse"] == pytest.approx(json.loads(Path("runs/cnn/metrics.json").read_text())["test"]["mse"])

    status, out, _ = run_cli(capsys, "predict", "runs/cnn", tiny_folder / "test.npz", "--output", "p.csv")
    assert status == 0 and out.strip() == "30 predictions written to p.csv"
    with open("p.csv") as handle:
        rows = list(csv.DictReader(handle))
    test = load_dataset(tiny_folder / "test.npz")
    assert len(rows) == 30 and list(rows[0]) == ["index", "prediction", "label"]
    assert [float(row["label"]) for row in rows] == test.y.tolist()
    mse = np.mean([(float(r["prediction"]) - float(r["label"])) ** 2 for r in rows])
    assert mse == pytest.approx(saved["mse"], rel=1e-5)

    status, out, _ = run_cli(capsys, "predict", "runs/cnn", tiny_folder / "test.npz")
    assert status == 0 and out == Path("p.csv").read_text()


def test_train_options_reach_the_config_and_the_saved_run(capsys, tmp_path, tiny_folder):
    parse = lambda *argv: _train_config(build_parser().parse_args(["train", "d", *argv]))  # noqa: E731
    assert parse() == TrainConfig()
    assert parse("--model", "mlp", "--plain") == TrainConfig.plain(model="mlp")
    assert parse("--plain", "--epochs", "3", "--augment") == TrainConfig.plain(epochs=3, augment=True)
    assert parse("--restore-best") == TrainConfig(restore_best=True)
    assert parse("--no-restore-best") == TrainConfig(restore_best=False)
    assert parse("--model", "finetune:efficientnet_lite0", "--finetune-stages", "0") == TrainConfig(
        model="finetune:efficientnet_lite0", finetune_stages=0
    )

    run_dir = tmp_path / "tuned"
    status, _, err = run_cli(
        capsys, "train", tiny_folder, "--epochs", "3", "--patience", "1", "--lr-patience", "1", "--weight-decay",
        "0.01", "--augment", "--no-standardize-targets", "--batch-size", "16", "--learning-rate", "0.002",
        "--run", run_dir, "--quiet",
    )
    assert status == 0, err
    config = json.loads((run_dir / "config.json").read_text())
    # The default model, auto, trains its candidates with these options and records the one it chose.
    assert config["train"] == TrainConfig(
        model=config["selection"]["chosen"], epochs=3, patience=1, lr_patience=1, weight_decay=0.01, augment=True,
        standardize_targets=False, batch_size=16, learning_rate=0.002,
    ).to_dict()
    assert TrainConfig().model == "auto" and 1 <= config["best_epoch"] <= config["epochs_run"]
    assert config["target_scaling"] == {"mean": 0.0, "std": 1.0}
    # The augmentation is saved with the model and predicts as trained.
    run = load_run(run_dir)
    assert run.model.get_layer("augmentation").seed == 0
    test = load_dataset(tiny_folder / "test.npz")
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert np.mean((run.predict(test.x) - test.y) ** 2) == pytest.approx(metrics["mse"], rel=1e-5)


def test_recipe_writes_both_models_and_a_comparison_with_the_bayes_reference(capsys, tmp_path):
    out_dir = tmp_path / "res"
    status, out, err = run_cli(capsys, "recipe", "--out", out_dir, "--epochs", "2", *TINY_DATA, "--quiet")
    assert status == 0, err
    assert err == ""
    summary_train = json.loads((out_dir / "summary.json").read_text())["train"]
    assert summary_train["patience"] == 0 and summary_train["standardize_targets"] is False
    assert out.splitlines()[0].startswith("mlp    test MSE ")
    assert out.splitlines()[1].startswith("cnn    test MSE ")
    names = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")}
    expected = {"comparison.md", "loss_curves.png", "samples.png", "summary.json", "data/test.npz"}
    expected |= {f"{m}/{f}" for m in ("mlp", "cnn") for f in ("model.keras", "loss.png", "predictions.png", "history.csv")}
    assert expected <= names
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["best"] in ("mlp", "cnn")
    # Each run names its data where it lies, not the temporary .partial folder it was made in.
    sources = json.loads((out_dir / "mlp" / "config.json").read_text())["data"]
    assert [sources[s]["source"] for s in ("train", "val", "test")] == [str(out_dir / "data" / f"{s}.npz") for s in ("train", "val", "test")]
    assert summary["models"]["cnn"]["parameters"] == create_model("cnn", (8, 8, 1)).count_params()
    comparison = (out_dir / "comparison.md").read_text()
    assert "| mlp |" in comparison and "| cnn |" in comparison
    assert f"Lowest test MSE: **{summary['best']}**" in comparison
    assert summary["reference_mse"] == pytest.approx(10.14, abs=0.01)
    ratio = summary["models"]["mlp"]["metrics"]["test"]["mse"] / summary["reference_mse"]
    assert f"Test MSE as a multiple of it: mlp {ratio:.2f}x" in comparison
    mlp_final = summary["models"]["mlp"]
    assert f"mlp {mlp_final['final_val_loss']:.2f} vs {mlp_final['final_loss']:.2f}" in comparison
    status, _, err = run_cli(capsys, "recipe", "--out", out_dir, "--epochs", "1", *TINY_DATA)
    assert status == 1 and "already exists; pass --overwrite" in one_line_error(err)


def _write(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


@pytest.fixture()
def bad_files(tmp_path):
    x = np.zeros((10, 8, 8, 1), np.uint8)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"\x00" * 64)
    return {
        "missing": tmp_path / "missing.npz",
        "corrupt": corrupt,
        "names": _write(tmp_path / "names.npz", images=x, labels=np.zeros(10)),
        "shape": _write(tmp_path / "shape.npz", x=np.zeros((10, 64)), y=np.zeros(10)),
        "count": _write(tmp_path / "count.npz", x=x, y=np.zeros(9)),
        "nan": _write(tmp_path / "nan.npz", x=x, y=np.r_[np.zeros(9), np.nan]),
        "unlabelled": _write(tmp_path / "unlabelled.npz", x=x),
        "large": _write(tmp_path / "large.npz", x=np.zeros((10, 9, 9, 1), np.uint8), y=np.zeros(10)),
    }


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "missing.npz: no such file"),
        ("corrupt", "corrupt.npz: not a readable .npz file"),
        ("names", "names.npz: has no array 'x' (found: images, labels)"),
        ("shape", "shape.npz: images 'x' must have shape (N, H, W) or (N, H, W, C), got (10, 64)"),
        ("count", "count.npz: has 9 labels for 10 images"),
        ("nan", "nan.npz: label at index 9 is nan"),
        ("unlabelled", "unlabelled.npz: has no array 'y'; labels are needed here"),
    ],
)
def test_bad_training_data_is_one_line_and_writes_no_run(capsys, bad_files, case, message):
    status, out, err = run_cli(capsys, "train", bad_files[case], "--epochs", "1", "--run", bad_files[case].parent / "r")
    assert status == 1
    assert message in one_line_error(err)
    assert not (bad_files[case].parent / "r").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "x.npz", "--epochs", "0"], "argument --epochs: expected a whole number of at least 1, got '0'"),
        (["train", "x.npz", "--epochs", "ten"], "argument --epochs: expected a whole number of at least 1, got 'ten'"),
        (["train", "x.npz", "--learning-rate", "nan"], "argument --learning-rate: expected a positive number"),
        (["train", "x.npz", "--val-fraction", "1.5"], "argument --val-fraction: expected a number between 0 and 1"),
        (["train", "x.npz", "--patience", "-1"], "argument --patience: expected a whole number of at least 0, got '-1'"),
        (["train", "x.npz", "--lr-patience", "1.5"], "argument --lr-patience: expected a whole number of at least 0"),
        (["train", "x.npz", "--weight-decay", "-0.1"], "argument --weight-decay: expected a number of at least 0, got '-0.1'"),
        (["train", "x.npz", "--weight-decay", "inf"], "argument --weight-decay: expected a number of at least 0"),
        (["train", "x.npz", "--plain", "yes"], "unrecognized arguments: yes"),
        (["generate", "d", "--height", "-3"], "argument --height: expected a whole number of at least 1"),
        (["recipe", "--seed", "x"], "argument --seed: expected a whole number of at least 0"),
        (["fit"], "argument COMMAND: invalid choice: 'fit'"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and message in line


def test_unknown_model_lists_the_known_ones_and_recipe_writes_nothing(capsys, tiny_folder, tmp_path):
    status, _, err = run_cli(capsys, "train", tiny_folder, "--model", "vgg", "--run", tmp_path / "r")
    assert status == 1
    assert one_line_error(err) == (
        "img2num: error: unknown model 'vgg'; known models: auto (the automatic choice), mlp, cnn, cnn_gap, resnet, "
        "pixel_gap, backbone:PRESET and finetune:PRESET (pretrained backbones)"
    )
    status, _, err = run_cli(capsys, "recipe", "--models", "mlp", "vgg", "--out", tmp_path / "res")
    assert status == 1 and "unknown model 'vgg'" in one_line_error(err)
    assert not (tmp_path / "res").exists()
    status, _, err = run_cli(capsys, "recipe", "--train-size", "0", "--out", tmp_path / "res")
    assert status == 1 and "the recipe needs at least 2 training samples, got 0" in one_line_error(err)


def test_missing_runs_unlabelled_or_oversized_data_and_existing_outputs_are_one_line(capsys, trained_run, tiny_folder, bad_files, tmp_path):
    status, _, err = run_cli(capsys, "train", tiny_folder, "--epochs", "1", "--run", trained_run.path)
    assert status == 1 and "already exists; pass --overwrite" in one_line_error(err)
    status, _, err = run_cli(capsys, "evaluate", tmp_path / "nothing", tiny_folder / "test.npz")
    assert status == 1 and "no such run folder" in one_line_error(err)
    status, _, err = run_cli(capsys, "evaluate", trained_run.path, bad_files["unlabelled"])
    assert status == 1 and "has no array 'y'" in one_line_error(err)
    status, _, err = run_cli(capsys, "predict", trained_run.path, bad_files["large"])
    assert status == 1
    assert "large.npz: images are 9x9x1 (HxWxC); this model takes 8x8x1" in one_line_error(err)
    existing = tmp_path / "keep.csv"
    existing.write_text("mine\n")
    status, _, err = run_cli(capsys, "predict", trained_run.path, tiny_folder / "test.npz", "--output", existing)
    assert status == 1 and "keep.csv: already exists; pass --overwrite" in one_line_error(err)
    assert existing.read_text() == "mine\n"


def test_unwritable_output_is_one_line(capsys, trained_run, tiny_folder, tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file-not-folder"
        target.write_text("x")
        status, _, err = run_cli(capsys, "predict", trained_run.path, tiny_folder / "test.npz", "--output", target / "p.csv")
        assert status == 1 and one_line_error(err) == (
            f"img2num: error: {target / 'p.csv'}: cannot be written; {target} is a file, not a folder"
        )
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        status, _, err = run_cli(capsys, "predict", trained_run.path, tiny_folder / "test.npz", "--output", locked / "p.csv")
        line = one_line_error(err)
        assert status == 1 and line.startswith(f"img2num: error: {locked}/") and line.endswith("Permission denied")


def test_python_api_example_lists_models_trains_and_evaluates(tmp_path):
    example = Path(__file__).parents[1] / "examples" / "python_api.py"
    result = subprocess.run(
        [sys.executable, str(example), str(tmp_path / "out"), "2"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "['mlp', 'cnn', 'cnn_gap', 'resnet', 'pixel_gap']"
    assert lines[1].startswith("test metrics: {'mse': ")
    assert lines[-1].startswith("evaluate: ")
    assert (tmp_path / "out" / "mlp" / "model.keras").exists()


def test_an_image_size_beyond_the_machines_memory_is_one_line(capsys, tmp_path, monkeypatch):
    from conftest import write_photos

    csv_path = write_photos(tmp_path / "p", count=4)
    monkeypatch.setattr("img2num.training.resolve_splits", lambda *a, **k: pytest.fail("decoded the images"))
    monkeypatch.setattr("img2num.memory.machine_memory", lambda: 16 * 10**9)
    status, _, err = run_cli(capsys, "train", csv_path, "--image-size", "100000x100000", "--workers", "2")
    assert status == 1
    assert one_line_error(err) == (
        "img2num: error: image size 100000x100000: a batch of 32 such images and their decoding on 2 processes take "
        "about 4.08 TB (float32 pixels, 3 bands), more than half of this machine's 16 GB; choose a smaller "
        "--image-size (or --batch-size)"
    )
