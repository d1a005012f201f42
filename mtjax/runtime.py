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


class _Drop(pylogging.Filter):
  """Drops INFO/DEBUG records logged from the given packages (Orbax logs every file it writes),
  and JAX's INFO line for each platform it probes and does not find ("Unable to initialize
  backend 'tpu'"): on a CPU-only machine that is expected, and `describe_devices` says what was
  found instead."""

  def __init__(self, *packages: str):
    super().__init__()
    self._paths = tuple(f"{os.sep}{p}{os.sep}" for p in packages)

  def filter(self, record):
    if record.levelno >= pylogging.WARNING:
      return True
    if record.getMessage().startswith("Unable to initialize backend"):
      return False
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
