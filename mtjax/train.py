"""Partially supervised multi-task training and evaluation: small top-level functions, then
`train_and_evaluate`, read top to bottom.

One step: global batch on the ('data',) mesh -> `train_step` under `jax.jit` with the state donated:
`objective.objective` (model apply -> per-task masked losses, only each example's labelled tasks
counting, + λ · the regularizer's loss) -> grads of the model's and the regularizer's params -> Adam.
`evaluation.eval_step` returns additive metric states that the host merges over the whole split,
once. The training length and learning rate come from `mtjax.schedule`.
"""

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions

from mtjax import (
  calls,
  checkpoint,
  evaluation,
  objective,
  regularizers,
  results,
  run_parts,
  schedule,
  seeds,
  sharding,
  weighting,
)
from mtjax import tasks as tasks_lib
from mtjax.data import pipeline
from mtjax.data.sources import create_source
from mtjax.models import registry
from mtjax.tasks import Task
from mtjax.train_state import TrainState, create_train_state, trainable

__all__ = [
    "NonFiniteLossError",
    "TrainState",
    "bound_train_step",
    "check_finite",
    "create_train_state",
    "make_train_step",
    "step_of_run",
    "train_and_evaluate",
    "train_step",
    "trainable",
]


class NonFiniteLossError(FloatingPointError):
  """Training produced a non-finite loss; the state of that step is not checkpointed."""


# ---------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    tasks: Sequence[Task],
    rng: jax.Array,
    task_weighting: weighting.Weighting,
    regularizer: regularizers.Regularizer | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam update on `objective.objective`: MTPSL's partially supervised loss, weighted by the
  task weighting's current weights (+ λ · the regularizer's loss), differentiated with respect to
  the model's, the regularizer's and the weighting's params; the weighting's state then reads the
  step's per-task losses (`mtjax.weighting`).

  Args:
    state: the replicated train state (donated by `make_train_step`).
    batch: the global batch (SPEC: image [B, H, W, 3], task ground truths, label_mask [B, T], and
      the regularizer's batch keys).
    rng: the run's base key; the step's key is fold_in(rng, state.step).
    task_weighting: the weighting whose transform ends `tx` (`optimizer.create_optimizer`).

  Returns:
    (new_state, metrics): float32 scalars "loss", "loss/<task>", "weight/<task>" and the
    regularizer's logs (`objective.objective`).
  """
  step_rng = jax.random.fold_in(rng, state.step)
  loss_fn = functools.partial(
      objective.objective,
      model=model,
      tasks=tasks,
      regularizer=regularizer,
      rng=step_rng,
      task_weighting=task_weighting,
      task_weights=weighting.current_weights(state.opt_state),
      reg_state=state.reg_state,
  )
  params = trainable(state)
  grads, aux = jax.grad(loss_fn, has_aux=True)(params, state.batch_stats, batch)
  step_metrics, batch_stats, (task_losses, task_counts), reg_state = aux
  updates, opt_state = tx.update(
      grads, state.opt_state, params, task_losses=task_losses, task_counts=task_counts
  )
  params = optax.apply_updates(params, updates)
  new_state = TrainState(
      step=state.step + 1,
      params=params["model"],
      batch_stats=batch_stats,
      opt_state=opt_state,
      reg_params=params["regularizer"],
      weighting_params=params["weighting"],
      reg_state=reg_state,
  )
  return new_state, step_metrics


def _grad_norms_fn(config, model, tasks, regularizer, task_weighting, mesh):
  """None without ``config.log_grad_norms``; else jit of (state, global batch) ->
  ``objective.term_gradient_norms`` at the state, with the key of the state's next train step."""
  if not config.log_grad_norms:
    return None
  rng = seeds.stream_key(config.seed, "train")

  def norms(state, batch):
    return objective.term_gradient_norms(
        trainable(state),
        state.batch_stats,
        batch,
        model=model,
        tasks=tasks,
        regularizer=regularizer,
        rng=jax.random.fold_in(rng, state.step),
        task_weighting=task_weighting,
        task_weights=weighting.current_weights(state.opt_state),
        reg_state=state.reg_state,
    )

  return jax.jit(norms, out_shardings=sharding.replicated(mesh))


def _mean_grad_norms(logged: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
  """{"log_steps": n, key: mean} of the gradient norms logged at n log steps (None if none)."""
  if not logged:
    return None
  return {"log_steps": len(logged), **{k: float(np.mean([x[k] for x in logged])) for k in logged[0]}}


def bound_train_step(config, model, tx, regularizer, task_weighting):
  """`train_step` with everything but (state, batch) bound: (state, batch) -> (state, metrics).

  What `make_train_step` jits; tools that time or compose steps (`calls.make_call`) take it as is.
  `task_weighting=None` builds `config.weighting`'s (its loss only; see `make_train_step`). The rng
  is the seed's "train" stream (`seeds.stream_key`), folded with the step inside `train_step`.

  Raises:
    ValueError: bad `config.tasks` or weighting (`tasks.from_config`, `weighting.create`).
  """
  if task_weighting is None:
    task_weighting = weighting.create(config, len(config.tasks), steps_per_epoch=1)
  return functools.partial(
      train_step,
      model=model,
      tx=tx,
      tasks=tasks_lib.from_config(config),
      rng=seeds.stream_key(config.seed, "train"),
      task_weighting=task_weighting,
      regularizer=regularizer,
  )


def step_of_run(config) -> tuple[run_parts.RunParts, Any, list[dict[str, np.ndarray]]]:
  """`config`'s run (`run_parts.build_run`), its `bound_train_step` and the host batches of its
  first call (`calls.resolve_steps_per_call(config.steps_per_call)` of them, read now): what a tool
  needs to time, profile or compile the call training makes.

  Raises:
    as `run_parts.build_run`.
  """
  n = calls.resolve_steps_per_call(config.steps_per_call)
  parts = run_parts.build_run(config)
  step = bound_train_step(config, parts.model, parts.tx, parts.regularizer, parts.task_weighting)
  batches_iter = run_parts.train_batches(config, parts)
  return parts, step, [next(batches_iter) for _ in range(n)]


def make_train_step(
    config,
    model,
    tx,
    mesh,
    regularizer: regularizers.Regularizer | None = None,
    task_weighting: weighting.Weighting | None = None,
    *,
    stacked: bool = False,
):
  """`train_step` jitted for `mesh`: state replicated and donated, batch sharded over 'data'.

  `task_weighting` defaults to `config.weighting`'s (the train step uses only its loss, which does
  not depend on the epoch length; its transform must be the one that ends `tx`). `stacked=True`:
  n consecutive steps in one call (`calls.jit_steps`, a `lax.scan`), (state, batches {key: [n, B,
  ...]}) -> (state, metrics {name: [n]}); the same updates as n calls (tested to float32 round-off).
  """
  step = bound_train_step(config, model, tx, regularizer, task_weighting)
  return calls.jit_steps(step, mesh) if stacked else calls.jit_step(step, mesh)


def check_finite(step: int, step_metrics: Mapping[str, float]) -> None:
  """Raises NonFiniteLossError naming the step and the non-finite task terms."""
  bad = [k for k, v in step_metrics.items() if not math.isfinite(v)]
  if bad:
    raise NonFiniteLossError(
        f"non-finite loss at step {step}: {', '.join(f'{k}={step_metrics[k]}' for k in bad)}; "
        "training stopped, no checkpoint of this state was written"
    )


# ---------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains `config` in `workdir`, evaluating, logging and checkpointing; resumes from the latest
  checkpoint there. Returns the final state.

  Training runs `schedule.num_train_steps(config, N)` updates. Each evaluation writes TensorBoard scalars
  and, atomically, `workdir/results.json` (`mtjax.results`: step, metrics, Δm, config hash).

  Raises:
    NonFiniteLossError: a loss term became NaN/inf (the broken state is not saved).
    ValueError / FileNotFoundError: bad config or data (see the sources and label settings).
  """
  parts = run_parts.build_run(config)
  tasks, mesh, train_source, label_mask = (
      parts.tasks, parts.mesh, parts.train_source, parts.label_mask
  )
  local_batch_size = sharding.per_process_batch_size(config.batch_size)
  logging.info(
      "processes=%d devices=%d (local %d, %s) global batch=%d per-process batch=%d",
      jax.process_count(),
      jax.device_count(),
      jax.local_device_count(),
      jax.default_backend(),
      config.batch_size,
      local_batch_size,
  )
  eval_source = create_source(config, config.dataset.eval_split)
  logging.info(
      "label setting %s: labelled examples per task %s of %d",
      config.label_setting,
      dict(zip(config.tasks, label_mask.sum(0).astype(int).tolist())),
      train_source.num_examples,
  )
  references = evaluation.delta_m_references(config)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if references is None:
    logging.warning(
        "Δm disabled (config.delta_m_reference=%r, label_setting=%r): no best "
        "checkpoint is tracked",
        config.delta_m_reference,
        config.label_setting,
    )

  # ---- Model, optimizer, state (restored if the workdir has a checkpoint) ------------------------
  epoch_steps, model, regularizer, task_weighting, tx, state = (
      parts.epoch_steps, parts.model, parts.regularizer, parts.task_weighting, parts.tx, parts.state
  )
  total_steps = schedule.num_train_steps(config, train_source.num_examples)
  manager = checkpoint.create_manager(
      workdir, keep=config.keep_checkpoints, async_save=config.async_checkpoints
  )
  restored = checkpoint.restore_latest(manager, state)
  if restored is not None:
    state = restored
    logging.info("resumed from %s at step %d", manager.directory, int(state.step))
  elif config.model.pretrained:  # A fresh run only: a resumed one has trained past it.
    params, batch_stats = registry.with_pretrained(config, state.params, state.batch_stats)
    state = state.replace(
        **jax.device_put({"params": params, "batch_stats": batch_stats}, sharding.replicated(mesh))
    )
    logging.info("backbone initialised from %s", config.model.pretrained)
  start_step = int(state.step)
  if start_step == 0:
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    num_reg_params = sum(x.size for x in jax.tree.leaves(state.reg_params))
    writer.write_hparams(
        {**config.to_dict(), "num_params": num_params, "num_regularizer_params": num_reg_params}
    )
    logging.info("model %s: %d parameters", config.model.name, num_params)
    if regularizer is not None:
      logging.info("regularizer %s: %d parameters", regularizer.name, num_reg_params)

  train_iter = run_parts.train_batches(config, parts, start_step)
  eval_ds = pipeline.eval_dataset(
      eval_source,
      per_process_batch_size=local_batch_size,
      tasks=tuple(config.tasks),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )

  steps_per_call = calls.resolve_steps_per_call(config.steps_per_call)
  train_call = calls.make_call(
      bound_train_step(config, model, tx, regularizer, task_weighting), mesh, steps_per_call
  )
  p_eval_step, p_predict = evaluation.make_eval_fns(config, model, tasks, mesh)
  p_grad_norms = _grad_norms_fn(config, model, tasks, regularizer, task_weighting, mesh)
  lr_schedule = schedule.learning_rate_schedule(config, epoch_steps)
  report_progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  is_writer = jax.process_index() == 0
  record = results.start(workdir, config, total_steps, start_step) if is_writer else None

  # ---- Loop --------------------------------------------------------------------------------------
  # A call's metrics are fetched after the next call is dispatched, so the host check never stalls
  # the device; before anything is logged, evaluated or saved, the latest call is checked. A call
  # runs up to `steps_per_call` steps and never past a step that logs, evaluates or saves.
  pending: list[tuple[int, int, dict]] = []  # (first step, number of steps, device metrics)
  history: list[dict[str, float]] = []
  grad_history: list[dict[str, float]] = []  # The log steps' gradient norms since the last eval.

  def resolve_pending():
    for first, n, device_metrics in pending:
      for step, step_metrics in calls.per_step_metrics(first, n, jax.device_get(device_metrics)):
        check_finite(step, step_metrics)
        history.append(step_metrics)
    pending.clear()

  periods = (config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps)

  logging.info(
      "training steps %d -> %d (%d steps per epoch of %d examples at global batch %d; up to %d "
      "steps per call)",
      start_step,
      total_steps,
      epoch_steps,
      train_source.num_examples,
      config.batch_size,
      steps_per_call,
  )
  step = start_step
  try:
    while step < total_steps:
      n = min(steps_per_call, calls.next_stop(step, total_steps, periods) - step)
      local_batches = [next(train_iter) for _ in range(n)]
      with jax.profiler.StepTraceAnnotation("train", step_num=step + 1):
        state, step_metrics = train_call(state, local_batches)
      resolve_pending()
      pending.append((step + 1, n, step_metrics))
      step += n
      report_progress(step)

      is_last = step == total_steps
      do_log = step % config.log_every_steps == 0 or is_last
      do_eval = step % config.eval_every_steps == 0 or is_last
      do_save = step % config.checkpoint_every_steps == 0 or do_eval
      if not (do_log or do_eval or do_save):
        continue
      resolve_pending()

      if do_log:
        summary = {k: float(np.mean([h[k] for h in history])) for k in history[-1]}
        summary["learning_rate"] = float(lr_schedule(step - 1))
        if p_grad_norms is not None:  # After the step, on its batch (the params it produced).
          norms = p_grad_norms(state, sharding.global_batch(mesh, local_batches[-1]))
          norms = {k: float(v) for k, v in jax.device_get(norms).items()}
          summary.update(norms)
          grad_history.append(norms)
        writer.write_scalars(step, {f"train/{k}": v for k, v in summary.items()})
        history.clear()

      delta_m = None
      if do_eval:
        with report_progress.timed("eval"):
          eval_results, delta_m = evaluation.evaluate_and_write(
              writer, step, p_eval_step, p_predict, state, eval_ds, mesh, config, references
          )

      if do_save:
        with report_progress.timed("checkpoint"):
          checkpoint.save(manager, step, state, delta_m=delta_m)
      if do_eval and is_writer:  # After the checkpoint: a resumed run redoes later evaluations.
        record = results.add_evaluation(
            record, step, eval_results, delta_m, train=_mean_grad_norms(grad_history)
        )
      if do_eval:
        grad_history.clear()
        if is_writer:  # Only process 0 holds the record; another would overwrite it with null.
          results.write(workdir, record)
      writer.flush()
  finally:  # Also on an error: the last good checkpoint in flight commits.
    checkpoint.close(manager)
  writer.close()
  return state
