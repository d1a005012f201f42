"""Orbax checkpoint wiring: save every N steps and at the end, keep the latest k plus the best by Δm,
resume from the latest.

Checkpoints live in `{workdir}/checkpoints/{step}`; each holds the whole train state (step, params,
optimizer state, BatchNorm statistics). The input position needs no checkpoint: the pipeline is a
deterministic function of (seed, step), so a resumed run skips to the restored step.
"""

import os

import jax
import orbax.checkpoint as ocp

DELTA_M = "delta_m"


def create_manager(workdir: str, *, keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager in `{workdir}/checkpoints` keeping the latest `keep` and the best by Δm.

  A checkpoint saved with metrics {"delta_m": x} competes for "best" (highest Δm is best: Δm is the
  mean relative improvement over the single-task references, higher is better); one saved without
  metrics is kept only while it is among the latest `keep`.

  Raises:
    ValueError: keep < 1.
  """
  if keep < 1:
    raise ValueError(f"config.keep_checkpoints={keep}: expected at least 1")
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy(
          [
              policies.LatestN(n=keep),
              policies.BestN(
                  get_metric_fn=lambda m: m[DELTA_M], n=1, keep_checkpoints_without_metrics=False
              ),
          ]
      ),
      enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
  )


def save(manager: ocp.CheckpointManager, step: int, state, *, delta_m: float | None = None) -> None:
  """Writes `state` as checkpoint `step` (all processes must call this), with Δm when known."""
  metrics = None if delta_m is None else {DELTA_M: float(delta_m)}
  manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
  manager.wait_until_finished()


def restore_latest(manager: ocp.CheckpointManager, state):
  """The latest checkpoint restored with the structure, dtypes and shardings of `state`, or None.

  Args:
    state: a train state of the right structure (e.g. freshly initialised); only its shapes, dtypes
      and shardings are used.
  """
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))
