"""Shared test setup, applied before any test module imports JAX or TensorFlow.

- TensorFlow serves tf.data only: keep its C++ banners quiet.
- torch (when installed) is imported first (below).
- JAX's persistent compilation cache is shared by the tests and the trainer subprocesses they
  start (through the environment), so the many tiny end-to-end runs compile each program once.
"""

import os
import tempfile

import pytest

# torch, where an extra installs it (sam, hrnet, mtcp), is imported before anything imports
# TensorFlow: imported after it, torch crashes the process, and the equivalence tests against
# PyTorch and transformers import it in the pytest workers, where other tests import TensorFlow.
try:
  import torch  # noqa: F401  pylint: disable=unused-import
  import triton  # noqa: F401  pylint: disable=unused-import  (what torch imports lazily)
except ImportError:
  pass

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
