"""Shared test setup, applied before any test module imports JAX or TensorFlow.

- TensorFlow serves tf.data only: keep its C++ banners quiet.
- JAX's persistent compilation cache is shared by the tests and the trainer subprocesses they
  start (through the environment), so the many tiny end-to-end runs compile each program once.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "mtjax-tests-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
