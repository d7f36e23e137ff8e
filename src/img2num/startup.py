"""What importing img2num sets up first: its version, and JAX as Keras' default backend, with the
user's own KERAS_BACKEND kept apart here so that it wins (img2num.backends)."""

import os

__version__ = "0.1.0"

# The backend the user named before img2num set its default, if any.
USER_KERAS_BACKEND = os.environ.get("KERAS_BACKEND") or None
# JAX is the measured default for the small models here.
os.environ.setdefault("KERAS_BACKEND", "jax")
