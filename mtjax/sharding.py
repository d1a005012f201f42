"""Data parallelism on a 1-D ('data',) mesh: the mesh, batch shardings, host-local -> global arrays.

Every process feeds only its own examples; `global_batch` assembles them into one global `jax.Array`
per key, sharded along the batch axis over all devices of all processes. Parameters and optimizer
state are replicated. Under `jax.jit` the computation is written for the global batch, so BatchNorm
statistics and the loss are over the whole global batch, exactly as on one device.
"""

from collections.abc import Mapping, Sequence

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


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of n batches stacked on a new leading axis ([n, B, ...]: several train steps in
  one call): the step axis whole, the batch axis split over 'data'."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


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


def global_batches(
    mesh: Mesh, local_batches: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, jax.Array]:
  """n host-local batches {key: [B_local, ...]} -> global jax.Arrays [n, B_local * process_count,
  ...], stacked on a new leading axis (`stacked_batch_sharding`).

  Raises:
    ValueError: no batches, or batches with different keys.
  """
  if not local_batches or any(b.keys() != local_batches[0].keys() for b in local_batches):
    raise ValueError(
        f"global_batches expects one or more batches with the same keys; got "
        f"{[sorted(b) for b in local_batches]}"
    )
  sharding = stacked_batch_sharding(mesh)
  return {
      k: jax.make_array_from_process_local_data(sharding, np.stack([b[k] for b in local_batches]))
      for k in local_batches[0]
  }
