"""Data parallelism on a 1-D ('data',) mesh: the mesh, batch shardings, host-local -> global arrays.

Every process feeds only its own examples; `global_batch` assembles them into one global `jax.Array`
per key, sharded along the batch axis over all devices of all processes. Parameters and optimizer
state are replicated. Under `jax.jit` the computation is written for the global batch, so BatchNorm
statistics and the loss are over the whole global batch, exactly as on one device.
"""

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def create_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes, axis name 'data'.

  The axis is `AxisType.Auto`: shardings inside the jitted steps are propagated by the compiler
  from the batch and state shardings, so model, loss and metric code stays sharding-agnostic.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), (jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of parameters and optimizer state: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of a batch: leading (batch) axis split over 'data', the rest whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def per_process_batch_size(global_batch_size: int) -> int:
  """The number of examples each process loads per step.

  Raises:
    ValueError: the global batch does not divide evenly over the devices.
  """
  if global_batch_size <= 0 or global_batch_size % jax.device_count():
    raise ValueError(
        f"batch_size={global_batch_size} must be a positive multiple of the device count "
        f"{jax.device_count()} ({jax.process_count()} process(es) x {jax.local_device_count()} "
        "local devices)"
    )
  return global_batch_size // jax.process_count()


def global_batch(mesh: Mesh, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
  """Host-local batch {key: [B_local, ...]} -> global jax.Arrays [B_local * process_count, ...].

  Uses `jax.make_array_from_process_local_data`, so it is correct on one process and on many.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
