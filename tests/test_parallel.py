"""`train --devices N`: data-parallel training on two CPU devices that XLA is told to make,
in a subprocess (the flag must come before JAX is imported)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from img2num.cli import main
    from img2num.config import PointsConfig, TrainConfig
    from img2num.data import generate_points_splits, write_points
    from img2num.errors import Img2NumError
    from img2num.training import train

    def splits(size):
        return generate_points_splits(PointsConfig(height=8, width=8, train=size, val=40, test=30, seed=3))

    def history(devices, data):
        config = TrainConfig(model="cnn_gap", epochs=3, seed=1, devices=devices, backend="jax")
        run = train(data["train"], config, val=data["val"], test=data["test"], quiet=True, pictures=False)
        return [[row["loss"], row["val_loss"]] for row in run.history], run.predict(data["test"].x).tolist()

    def error(devices, size, batch_size=32):
        try:
            data = splits(size)
            train(data["train"], TrainConfig(model="mlp", epochs=1, devices=devices, batch_size=batch_size, backend="jax"), val=data["val"], quiet=True, pictures=False)
        except Img2NumError as problem:
            return str(problem)

    data = splits(160)
    out = {"one": history(1, data), "two": history(2, data)}
    out["too_many"] = error(3, 160)
    out["odd_batch"] = error(2, 160, batch_size=31)
    out["odd_last_batch"] = error(2, 151)
    write_points(sys.argv[1], PointsConfig(height=8, width=8, train=160, val=40, test=30, seed=3))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        out["cli_status"] = main(["train", sys.argv[1], "--model", "mlp", "--devices", "4", "--backend", "jax"])
    out["cli_stderr"] = stderr.getvalue()
    print(json.dumps(out))
    """
)


def test_two_devices_give_the_losses_of_one_and_bad_counts_are_one_line_errors(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "points")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (one, one_test), (two, two_test) = out["one"], out["two"]
    assert len(one) == len(two) == 3 and one[0] != one[-1]
    np.testing.assert_allclose(two, one, rtol=1e-5)
    np.testing.assert_allclose(two_test, one_test, rtol=1e-5)
    assert out["too_many"] == "--devices 3: this machine has 2 cpu devices"
    assert out["odd_batch"].startswith("--devices 2: the batch size 31 must divide by the device count")
    assert out["odd_last_batch"].startswith("--devices 2: the training split's last batch of 23 images (151 images in batches of 32)")
    assert out["cli_status"] != 0 and out["cli_stderr"] == "img2num: error: --devices 4: this machine has 2 cpu devices\n"
