"""Train steps per jitted call: how many (`resolve_steps_per_call`), the jitted call of one step or
of n steps scanned (`jit_step`, `jit_steps`), where a call must stop (`next_stop`) and its metrics
step by step (`per_step_metrics`).

Why several steps per call: XLA:CPU maps a call's temporaries afresh and the kernel zeroes each page
at its first touch (on the 2-core dev CPU 0.45 s of one core per GiB at 3 GiB, 0.75 s at 11 GiB;
SegNet-MTL at 288x384, batch 8: 11 GiB, 16 of the step's 59 s of thread time); the steps of one call
reuse them (docs/performance.md).
"""

from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from mtjax import sharding

# Steps per call on the CPU ("auto"): XLA's temporaries are zeroed once for 8 steps instead of 8 times.
CPU_STEPS_PER_CALL = 8


def resolve_steps_per_call(value: int | str) -> int:
  """`config.steps_per_call`: how many train steps one jitted call runs.

  "auto" is CPU_STEPS_PER_CALL on the CPU backend and 1 elsewhere (accelerator memory is pooled by
  the runtime); a positive integer (or its string) is taken as given.

  Raises:
    ValueError: anything else.
  """
  if value == "auto":
    return CPU_STEPS_PER_CALL if jax.default_backend() == "cpu" else 1
  try:
    n = int(value)
  except (TypeError, ValueError):
    n = 0
  if n < 1 or (isinstance(value, float) and value != n):
    raise ValueError(f"config.steps_per_call={value!r}: expected 'auto' or a positive integer")
  return n


def _jit(fn: Callable, mesh: Mesh, batch_sharding) -> Callable:
  replicated = sharding.replicated(mesh)
  return jax.jit(
      fn,
      in_shardings=(replicated, batch_sharding),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
  )


def jit_step(step: Callable, mesh: Mesh) -> Callable:
  """`step(state, batch) -> (state, metrics)` jitted: state replicated and donated, metrics
  replicated, the batch sharded over 'data' (`sharding.global_batch`)."""
  return _jit(step, mesh, sharding.batch_sharding(mesh))


def jit_steps(step: Callable, mesh: Mesh) -> Callable:
  """n consecutive `step`s in one jitted call (`lax.scan`): (state, batches) -> (state, metrics),
  batches {key: [n, B, ...]} (`sharding.global_batches`), metrics {name: [n]}, step i's in row i.
  State replicated and donated; a new n compiles once more."""
  return _jit(
      lambda state, batches: jax.lax.scan(step, state, batches),
      mesh,
      sharding.stacked_batch_sharding(mesh),
  )


def next_stop(step: int, total_steps: int, periods: Sequence[int]) -> int:
  """The first step after `step` that is a multiple of one of `periods` (steps that log, evaluate
  or save), or `total_steps` if that comes first: where a call must end."""
  return min(total_steps, *(step - step % every + every for every in periods))


def per_step_metrics(
    first: int, n: int, host_metrics: Mapping[str, np.ndarray]
) -> list[tuple[int, dict[str, float]]]:
  """A call's fetched metrics ({name: n values, or a scalar for n = 1}) as (step, {name: float})
  for its steps first .. first + n - 1."""
  rows = {k: np.reshape(v, (n,)) for k, v in host_metrics.items()}
  return [(first + i, {k: float(v[i]) for k, v in rows.items()}) for i in range(n)]


def make_call(step: Callable, mesh: Mesh, steps_per_call: int) -> Callable:
  """(state, host-local batches: a list of n <= steps_per_call) -> (state, metrics): the n steps
  in one jitted call (`jit_step` for steps_per_call = 1, where n must be 1; else `jit_steps`),
  the batches assembled into global arrays first (`sharding.global_batch(es)`)."""
  if steps_per_call == 1:
    one = jit_step(step, mesh)
    return lambda state, local: one(state, sharding.global_batch(mesh, local[0]))
  several = jit_steps(step, mesh)
  return lambda state, local: several(state, sharding.global_batches(mesh, local))
