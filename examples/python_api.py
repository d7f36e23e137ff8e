"""img2num from Python: the tutorial's workflow in a few calls.

Setup / Data / Model / Train / Evaluate / Predict, top to bottom. Run it as
    .venv/bin/python examples/python_api.py [OUT_FOLDER] [EPOCHS]
"""

import sys
from pathlib import Path

import numpy as np

import img2num

# Setup: where the files go, and how long to train (the tutorial used 1000 epochs).
out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/python_api")
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 50

# Data: the points task, 1500 / 300 / 100 samples of 16x16, written as .npz files.
img2num.write_points(out / "data", img2num.PointsConfig(seed=0), overwrite=True)

# Model: any registered name works; `img2num.list_models()` lists them.
print([spec.name for spec in img2num.list_models()])

# Train: MSE and Adam, validation every epoch; the run folder is the saved bundle.
run = img2num.train(
    out / "data",
    img2num.TrainConfig(model="mlp", epochs=epochs),
    run_dir=out / "mlp",
    overwrite=True,
    quiet=True,
)
print("test metrics:", {name: round(value, 3) for name, value in run.metrics["test"].items()})

# Evaluate and predict with the saved run, exactly as it predicted after training.
loaded = img2num.load_run(out / "mlp")
test = img2num.load_dataset(out / "data" / "test.npz")
predictions = img2num.predict(loaded, test.x)
assert np.array_equal(predictions, run.predict(test.x))
print("first predictions:", np.round(predictions[:5], 1), "labels:", test.y[:5])
print("evaluate:", img2num.evaluate(loaded, test)["mse"])
