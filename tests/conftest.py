"""Shared test setup, applied before any test module imports JAX or TensorFlow.

- TensorFlow serves tf.data only: keep its C++ banners quiet.
- JAX's persistent compilation cache is shared by the tests and the trainer subprocesses they
  start (through the environment), so the many tiny end-to-end runs compile each program once.
"""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "mtjax-tests-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A tiny NYUv2 layout (5 train / 3 val frames at 32x64) for end-to-end trainer runs."""
  from tests.data_fixtures import make_nyuv2_layout

  root = tmp_path_factory.mktemp("nyuv2")
  make_nyuv2_layout(root, splits={"train": 5, "val": 3}, hw=(32, 64), seed=0)
  return root
