"""Evaluation: additive metric states per batch on device, merged over the whole split on host;
the Δm references of a config; the image panel; TensorBoard scalar names; one evaluation of the
training loop (``evaluate_and_write``).
"""

from collections.abc import Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from mtjax import metrics, sharding
from mtjax.tasks import Task, get_tasks, prediction_to_gt_format


def eval_step(
    state,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tasks: Sequence[Task],
    num_classes: int,
) -> dict[str, dict[str, jax.Array]]:
  """Additive metric states of one batch, {task: state} (`mtjax.metrics`), padding excluded.

  Every pixel with ground truth counts (the label mask is a training-time notion); padded examples
  (valid == 0) have their ground truth set to the task's invalid value, so they count nowhere.
  """
  predictions = model.apply(
      {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
  )
  states = {}
  for task in tasks:
    gt = batch[task.name]
    valid = batch["valid"].reshape((-1,) + (1,) * (gt.ndim - 1)) > 0
    gt = jnp.where(valid, gt, -1 if task.name == "semseg" else 0)
    states[task.name] = task.metric_state(predictions[task.name], gt, num_classes)
  return states


def delta_m_references(config: ml_collections.ConfigDict) -> dict | None:
  """The STL references Δm is measured against, or None when Δm is disabled or undefined.

  "auto" picks MTPSL's NYUv2 numbers of `config.label_setting` when that is full | onelabel |
  randomlabels; for a path setting it is undefined (name a setting explicitly).

  Raises:
    ValueError: an unknown reference name.
  """
  name = config.delta_m_reference
  if not name:
    return None
  table = metrics.MTPSL_NYUV2_STL_REFERENCES
  if name == "auto":
    name = config.label_setting if config.label_setting in table else None
    if name is None or config.dataset.name != "nyuv2":
      return None
  if name not in table:
    raise ValueError(
        f"config.delta_m_reference={name!r}: expected 'auto', '' or one of {tuple(table)}"
    )
  return {task: ref for task, ref in table[name].items() if task in config.tasks}


def evaluate(
    eval_fn,
    state,
    batches: Iterator[Mapping[str, np.ndarray]],
    mesh: jax.sharding.Mesh,
) -> dict[str, dict[str, float]]:
  """Runs `eval_fn` over every batch and finalises the split's metrics: {task: {metric: value}}.

  Batch states are merged on the host in float64, so the numbers are sums over the whole split
  (never a mean of batch means). A task with no ground truth in the split maps to {} (absent).
  """
  total = None
  for local_batch in batches:
    batch_state = jax.tree.map(
        lambda x: np.asarray(x, np.float64),
        jax.device_get(eval_fn(state, sharding.global_batch(mesh, local_batch))),
    )
    total = batch_state if total is None else metrics.merge(total, batch_state)
  if total is None:
    raise ValueError("the evaluation split yielded no batch")
  return metrics.finalize_all(total)


def image_panel(
    predict_fn, state, local_batch, mesh, tasks: Sequence[Task], num_classes: int, count: int
) -> np.ndarray:
  """uint8 [count, H, (1 + 2T) W, 3]: image | gt, prediction per task, for the first examples."""
  batch = sharding.global_batch(mesh, local_batch)
  predictions = multihost_utils.process_allgather(predict_fn(state, batch["image"]), tiled=True)
  batch = multihost_utils.process_allgather(batch, tiled=True)
  n = min(count, int(np.sum(batch["valid"] > 0)))
  max_depth = float(np.max(batch["depth"][:n])) if "depth" in batch else 1.0
  columns = [np.round(np.clip(batch["image"][:n], 0, 1) * 255).astype(np.uint8)]
  for task in tasks:
    pred = np.asarray(prediction_to_gt_format(task.name, predictions[task.name][:n]))
    columns += [
        task.to_rgb(np.asarray(batch[task.name][:n]), num_classes, max_depth),
        task.to_rgb(pred, num_classes, max_depth),
    ]
  return np.concatenate(columns, axis=2)


def flatten_results(evaluation: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
  """{task: {metric: v}} -> {"eval/<task>/<metric>": v}."""
  return {f"eval/{t}/{m}": v for t, ms in evaluation.items() for m, v in ms.items()}


def evaluate_and_write(
    writer,
    step: int,
    eval_fn,
    predict_fn,
    state,
    eval_ds,
    mesh: jax.sharding.Mesh,
    config: ml_collections.ConfigDict,
    references: Mapping[str, Mapping[str, float]] | None,
) -> tuple[dict[str, dict[str, float]], float | None]:
  """Evaluates `state` on the whole of `eval_ds` (a tf.data dataset of local batches) and writes
  the scalars ("eval/<task>/<metric>", "eval/delta_m") and the image panel of its first batch
  ("eval/panel", `config.num_panel_images` examples) to the CLU `writer` at `step`.

  Args:
    eval_fn: the jitted `eval_step`; predict_fn: jitted (state, images) -> predictions.
    references: Δm's STL references (`delta_m_references`), or None for no Δm.

  Returns:
    ({task: {metric: value}} as `evaluate`, Δm in % or None when disabled or undefined).

  Raises:
    ValueError: the split yielded no batch.
  """
  tasks = get_tasks(config.tasks)
  results = evaluate(eval_fn, state, eval_ds.as_numpy_iterator(), mesh)
  scalars = flatten_results(results)
  absent = [t.name for t in tasks if not results.get(t.name)]
  if absent:
    logging.info(
        "step %d: no ground truth in the %s split for %s (reported absent)",
        step,
        config.dataset.eval_split,
        absent,
    )
  delta_m = None if references is None else metrics.delta_m(results, references)
  if delta_m is not None:
    scalars["eval/delta_m"] = delta_m
  writer.write_scalars(step, scalars)
  first = next(eval_ds.take(1).as_numpy_iterator())
  panel = image_panel(
      predict_fn, state, first, mesh, tasks, config.dataset.num_classes, config.num_panel_images
  )
  writer.write_images(step, {"eval/panel": panel})
  return results, delta_m
