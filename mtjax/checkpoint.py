"""Orbax checkpoint wiring: save every N steps and at the end, keep the latest k plus the best by Δm,
resume from the latest.

Checkpoints live in `{workdir}/checkpoints/{step}` (`workdir` a local path or a gs:// URL,
`mtjax.fileio`); each holds the whole train state (step, params, optimizer state, BatchNorm
statistics). The input position needs no checkpoint: the pipeline is a deterministic function of
(seed, step), so a resumed run skips to the restored step.

**Asynchronous saves** (``config.async_checkpoints``, on by default): `save` returns once the state
has been copied off the accelerator, and Orbax writes it in a background thread while training goes
on; the next `save` first waits for the one in flight, and `close` waits for the last. A checkpoint
is committed atomically (a local directory renamed into place, a bucket's ``commit_success.txt``
marker written last), so a process killed at any moment leaves the latest committed checkpoint
restorable and never a partial one; `latest_step` only ever sees committed ones. The train loop
checks every loss before it saves, so a non-finite state is never saved.
"""

import jax
import orbax.checkpoint as ocp

from mtjax import fileio

__all__ = [
    "DELTA_M",
    "close",
    "create_manager",
    "restore_latest",
    "save",
]


DELTA_M = "delta_m"


def create_manager(workdir: str, *, keep: int, async_save: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager in `{workdir}/checkpoints` keeping the latest `keep` and the best by Δm,
  saving asynchronously unless `async_save` is False (module docstring). Close it (`close`) before
  the process exits: that waits for the save in flight.

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
      enable_async_checkpointing=async_save,
  )
  return ocp.CheckpointManager(fileio.as_path(workdir) / "checkpoints", options=options)


def save(manager: ocp.CheckpointManager, step: int, state, *, delta_m: float | None = None) -> None:
  """Starts writing `state` as checkpoint `step`, with Δm when known (all processes must call
  this). With an asynchronous manager it returns once `state` is copied to host memory (the caller
  may then donate or overwrite it) and the write goes on in the background; a synchronous one
  returns when the checkpoint is committed."""
  metrics = None if delta_m is None else {DELTA_M: float(delta_m)}
  manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def close(manager: ocp.CheckpointManager) -> None:
  """Waits for the save in flight to commit, then releases the manager's threads."""
  manager.wait_until_finished()
  manager.close()


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
