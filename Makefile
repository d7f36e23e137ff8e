# Two commands from a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The tutorial trained 1000 epochs (`img2num recipe` alone does); the demo stops at 200 to
# finish in about 60 seconds on 2 CPU cores.
DEMO_EPOCHS ?= 200
DEMO_OUT ?= results/demo

.PHONY: demo test setup browser clean

setup: $(STAMP)

# PyTorch's CPU build: a bare `pip install torch` on Linux brings the CUDA build (several GB).
# The pin matches the CPU wheel this project's machines carry; any torch>=2.4 works.
TORCH ?= torch==2.13.0
# keras-hub without its declared dependencies: those it imports are in pyproject.toml; the one
# left out, tensorflow-text, would bring TensorFlow (docs/backbones.md).
KERAS_HUB ?= keras-hub==0.32.0

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "img2num needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,video,geo,onnx,ray]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "$(KERAS_HUB)"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/img2num recipe --epochs $(DEMO_EPOCHS) --out $(DEMO_OUT) --overwrite
	@echo "Open $(DEMO_OUT)/comparison.md and the pictures beside it."

# The layers contract first (pyproject.toml, [tool.importlinter]): an import that climbs fails.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# Debian's Chromium and its driver, for the served web page's browser test (tests/test_serve_page.py);
# run as root. Without them that one test is skipped, saying so; under CI=true (.ci/run) it fails.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

clean:
	rm -rf $(VENV) results runs .pytest_cache .hypothesis
