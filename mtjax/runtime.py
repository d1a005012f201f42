"""Process set-up shared by the command-line entry points (`mtjax.main`, `mtjax.experiments`):
logs that read well to a newcomer, and TensorFlow kept off the accelerators.

Import this before TensorFlow: it quiets TensorFlow's C++ banners (TF_CPP_MIN_LOG_LEVEL=1 unless
the environment sets it).
"""

from __future__ import annotations

import logging as pylogging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow serves tf.data only: no banners.


# Lines a first run prints that say nothing useful to its reader: JAX probing for a TPU it does
# not find (`describe_devices` names what was found instead), TFDS noting that the folder of a
# dataset about to be generated has no metadata yet, and TFDS recommending OpenCV for decoding
# 96x128 PNGs.
_NOISE = (
    "Unable to initialize backend",
    "has no dataset_info.json",
    "OpenCV is not installed",
)


class _Drop(pylogging.Filter):
  """Drops INFO/DEBUG records logged from the given packages (Orbax logs every file it writes)
  and the records of `_NOISE`."""

  def __init__(self, *packages: str):
    super().__init__()
    self._paths = tuple(f"{os.sep}{p}{os.sep}" for p in packages)

  def filter(self, record):
    message = record.getMessage()
    if any(noise in message for noise in _NOISE):
      return False
    if record.levelno >= pylogging.WARNING:
      return True
    return not any(p in record.pathname for p in self._paths)


def configure_logging() -> None:
  """absl logs (progress, metrics, notes) to stdout, without Orbax's per-file INFO records or
  JAX's probing of absent platforms."""
  from absl import logging

  logging.get_absl_handler().python_handler.stream = sys.stdout
  drop = _Drop("orbax")
  logging.get_absl_logger().addFilter(drop)
  pylogging.getLogger("jax._src.xla_bridge").addFilter(drop)


def configure_devices() -> None:
  """TensorFlow (tf.data only) sees no GPU, so that it never takes accelerator memory from JAX."""
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")


def describe_devices() -> str:
  """One line naming the JAX backend and devices, e.g. "JAX on cpu: 1 device (no GPU or TPU
  found, so training runs on the CPU)"."""
  import jax

  backend, n = jax.default_backend(), jax.device_count()
  line = (
      f"JAX process {jax.process_index()} of {jax.process_count()} on {backend}: {n} device"
      f"{'s' if n != 1 else ''} ({jax.local_device_count()} local: {jax.local_devices()[0].device_kind}"
      f"{' ...' if jax.local_device_count() > 1 else ''})"
  )
  if backend == "cpu":
    line += "; no GPU or TPU found, so training runs on the CPU"
  return line
