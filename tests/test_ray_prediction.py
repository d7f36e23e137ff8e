"""`predict --engine ray` and `predict_dataset` on a local two-CPU Ray cluster, started once for the module."""

import numpy as np
import pytest
from PIL import Image

from conftest import needs, one_line_error, run_cli

pytestmark = needs("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of two CPUs for the module's tests, shut down after."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def new_images(tmp_path_factory):
    """Three good 12x12 images, a gray one in a subfolder, a broken file and one of the wrong size."""
    folder = tmp_path_factory.mktemp("ray") / "new"
    (folder / "sub").mkdir(parents=True)
    for index in range(3):
        Image.fromarray(np.full((12, 12, 3), 40 * index + 10, np.uint8)).save(folder / f"{index}.png")
    Image.fromarray(np.full((12, 12), 90, np.uint8)).save(folder / "sub" / "gray.bmp")
    (folder / "broken.png").write_text("not an image")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "large.png")
    return folder


def test_ray_engine_writes_the_plain_commands_csv_and_reports_the_same_bad_files(ray_cluster, image_run, new_images, capsys):
    folder, out = new_images, new_images.parent
    status, _, plain_err = run_cli(capsys, "predict", image_run.path, folder, out / "nowhere", "--output", out / "plain.csv")
    assert status == 1
    status, stdout, err = run_cli(
        capsys, "predict", image_run.path, folder, out / "nowhere", "--engine", "ray", "--workers", "1", "--output", out / "ray.csv"
    )
    assert status == 1 and stdout == "4 predictions written to " + str(out / "ray.csv") + "\n"
    # Ray's own log lines (an actor's restart policy, a progress bar) aside, the same lines.
    ours = sorted(line for line in err.splitlines() if line.startswith("img2num: "))
    assert ours == sorted(plain_err.splitlines()) and len(ours) == 4
    assert "3 of 7 images could not be used; 4 predictions written" in err
    plain, ray = (np.loadtxt(out / name, delimiter=",", skiprows=1, dtype=str) for name in ("plain.csv", "ray.csv"))
    assert list(ray[:, 0]) == list(plain[:, 0]) == [str(folder / name) for name in ("0.png", "1.png", "2.png", "sub/gray.bmp")]
    np.testing.assert_allclose(ray[:, 1].astype(float), plain[:, 1].astype(float), rtol=1e-6)

    # The output is never replaced without --overwrite, before Ray does any work.
    status, _, err = run_cli(capsys, "predict", image_run.path, folder, "--engine", "ray", "--output", out / "ray.csv")
    assert status != 0 and one_line_error(err).endswith("ray.csv: already exists; pass --overwrite to replace it")
    status, _, err = run_cli(capsys, "predict", image_run.path, folder, "--engine", "ray", "--output", out / "ray.json")
    assert "expected a .csv file or a .parquet folder" in one_line_error(err)


def test_predict_dataset_on_read_images_and_a_parquet_folder(ray_cluster, image_run, new_images, capsys):
    import pyarrow.parquet as pq

    from img2num.prediction import predict
    from img2num.ray_prediction import predict_dataset

    good = [str(new_images / name) for name in ("0.png", "1.png", "2.png")]
    expected = predict(image_run, good)

    # Rows decoded by Ray's own image reader, predicted through the run's preprocessing.
    dataset = ray_cluster.data.read_images(good, include_paths=True)
    rows = sorted(predict_dataset(image_run, dataset, workers=1).take_all(), key=lambda row: row["path"])
    assert [row["path"] for row in rows] == good
    np.testing.assert_allclose([row["prediction"] for row in rows], expected, rtol=1e-6)
    assert [row["problem"] for row in rows] == ["", "", ""]

    # The CLI's Parquet folder: Ray's writer, good rows only; bad files reported as for CSV.
    output = new_images.parent / "out.parquet"
    status, stdout, err = run_cli(capsys, "predict", image_run.path, *good, new_images / "broken.png", "--engine", "ray", "--workers", "1", "--output", output)
    assert status == 1 and stdout == f"3 predictions written to {output}\n"
    assert [line for line in err.splitlines() if line.startswith("img2num: ")][0] == f"img2num: error: {new_images / 'broken.png'}: not an image file (Pillow cannot identify it)"
    table = pq.read_table(output).sort_by("path").to_pydict()
    assert table["path"] == good and set(table) == {"path", "prediction"}
    np.testing.assert_allclose(table["prediction"], expected, rtol=1e-6)
