"""Evaluation: additive metric states per batch on device, merged over the whole split on host;
the Δm references of a config; the image panel; TensorBoard scalar names; one evaluation of the
training loop (``evaluate_and_write``).
"""

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from mtjax import metrics, sharding
from mtjax import tasks as tasks_lib
from mtjax.data import geometry
from mtjax.tasks import Task


def resize_into_box(prediction: jax.Array, box: jax.Array, *, nearest: bool) -> jax.Array:
  """Each example's prediction resized from the whole canvas into its ``box``: MTI-Net / MT-CP's
  evaluation at the original size (``mtjax.data.geometry``, geometry "resize").

  For box (top, left, h, w), output pixel (y, x) inside the box samples the prediction at the
  canvas position of (y − top, x − left) of an h x w image: nearest as ``cv2.INTER_NEAREST``
  (source index floor(d · H / h)), else linear with half-pixel centres as ``cv2.INTER_LINEAR``
  (``jax.image.scale_and_translate``, no antialiasing; at the outermost half pixel the weights
  are renormalised where OpenCV replicates the border). Outside the box: 0. Reference: MTI-Net
  ``evaluation/evaluate_utils.py`` (predictions resized to the original size: semseg nearest;
  depth, normals, edge, saliency linear).

  Args:
    prediction: float [B, H, W, C], the model's output at the canvas.
    box: int32 [B, 4] (top, left, h, w); h or w 0 (padding examples) gives zeros.
    nearest: nearest (class scores) or linear.

  Returns:
    float [B, H, W, C].
  """
  height, width = prediction.shape[1:3]

  def one(p, b):
    top, left = b[0], b[1]
    h, w = jnp.maximum(b[2], 1), jnp.maximum(b[3], 1)
    rows, cols = jnp.arange(height) - top, jnp.arange(width) - left
    inside = (
        ((rows >= 0) & (rows < b[2]))[:, None] & ((cols >= 0) & (cols < b[3]))[None, :]
    )[..., None]
    if nearest:
      src_r = jnp.clip(jnp.floor(rows * (height / h)).astype(jnp.int32), 0, height - 1)
      src_c = jnp.clip(jnp.floor(cols * (width / w)).astype(jnp.int32), 0, width - 1)
      out = p[src_r][:, src_c]
    else:
      scale = jnp.stack([h / height, w / width]).astype(jnp.float32)
      out = jax.image.scale_and_translate(
          p, p.shape, (0, 1), scale, jnp.stack([top, left]).astype(jnp.float32), "linear",
          antialias=False,
      )
    return jnp.where(inside, out, 0).astype(p.dtype)

  return jax.vmap(one)(prediction, box)


def resize_predictions(
    predictions: Mapping[str, jax.Array], box: jax.Array, tasks: Sequence[Task]
) -> dict[str, jax.Array]:
  """``resize_into_box`` of each task's output: nearest for class tasks (int32 ground truth),
  linear otherwise."""
  out = dict(predictions)
  for task in tasks:
    out[task.name] = resize_into_box(
        predictions[task.name], box, nearest=task.gt_dtype == "int32"
    )
  return out


def eval_step(
    state,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tasks: Sequence[Task],
    resize_back: bool = False,
    as_released: bool = False,
) -> dict[str, dict[str, jax.Array]]:
  """Metric states of one batch, {task: `task.metric_state`}, padding excluded: additive, or
  the input of the task's `host_state` (which `evaluate` applies on the host).

  Every pixel with ground truth counts (the label mask is a training-time notion); padded examples
  (valid == 0) have their ground truth set to the task's invalid value, so they count nowhere.
  With ``resize_back`` the predictions are first resized into ``batch["box"]``
  (``resize_predictions``): the ground truth lies there at its original size. With
  ``as_released`` the states also hold ``<task>_as_released`` for each task with a
  ``released_metric_state`` (semseg, normal): the metrics of RDC's released code, the normals
  scored on the model's output as it is (``mtjax.tasks.base.Task``).
  """
  predictions = model.apply(
      {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
  )
  if resize_back:
    predictions = resize_predictions(predictions, batch["box"], tasks)
  states = {}
  for task in tasks:
    gt = batch[task.name]
    valid = batch["valid"].reshape((-1,) + (1,) * (gt.ndim - 1)) > 0
    gt = jnp.where(valid, gt, task.invalid_like(gt))
    states[task.name] = task.metric_state_of_output(predictions[task.name], gt)
    if as_released and task.released_metric_state is not None:
      states[task.name + metrics.AS_RELEASED] = task.released_metric_state(
          predictions[task.name], gt
      )
  return states


def make_eval_fns(
    config: ml_collections.ConfigDict, model: nn.Module, tasks: Sequence[Task], mesh
) -> tuple[Callable, Callable]:
  """The jitted evaluation functions of a run.

  Returns:
    (eval_fn, predict_fn): ``eval_fn(state, global_batch)`` is `eval_step` with the run's
    resizing and ``config.metrics_as_released``, its states replicated over `mesh`;
    ``predict_fn(state, images [B, H, W, 3] float32)`` -> {task: the model's output} in eval mode
    (the image panels).
  """
  eval_fn = jax.jit(
      functools.partial(
          eval_step,
          model=model,
          tasks=tasks,
          resize_back=resizes_back(config),
          as_released=config.metrics_as_released,
      ),
      out_shardings=sharding.replicated(mesh),
  )
  predict_fn = jax.jit(
      lambda state, images: model.apply(
          {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
      )
  )
  return eval_fn, predict_fn


def delta_m_references(config: ml_collections.ConfigDict) -> dict | None:
  """The STL references Δm is measured against, or None when Δm is disabled or undefined.

  "auto" picks the STL numbers of `config.label_setting` (full | onelabel | randomlabels) in the
  dataset's table (`metrics.STL_REFERENCES`: MTPSL's NYUv2 and Cityscapes); for a path setting, or
  a dataset without a table, it is undefined (name a setting explicitly where a table exists).

  Raises:
    ValueError: an unknown reference name, or a named reference for a dataset without a table.
  """
  name = config.delta_m_reference
  if not name:
    return None
  table = metrics.STL_REFERENCES.get(config.dataset.name)
  if name == "auto":
    if table is None or config.label_setting not in table:
      return None
    name = config.label_setting
  if table is None:
    raise ValueError(
        f"config.delta_m_reference={name!r}: {config.dataset.name!r} has no STL references; "
        f"datasets with references: {tuple(metrics.STL_REFERENCES)} (set '' to disable Δm)"
    )
  if name not in table:
    raise ValueError(
        f"config.delta_m_reference={name!r}: expected 'auto', '' or one of {tuple(table)}"
    )
  return {task: ref for task, ref in table[name].items() if task in config.tasks}


def as_released_references(config: ml_collections.ConfigDict) -> dict | None:
  """The hard-coded STL numbers RDC's released script scores Δm against
  (``metrics.RDC_RELEASED_STL_REFERENCES``) for ``config.metrics_as_released`` on NYUv2 with a
  generated label setting it names (full | onelabel | randomlabels); None otherwise."""
  table = metrics.RDC_RELEASED_STL_REFERENCES
  if not (
      config.metrics_as_released
      and config.dataset.name == "nyuv2"
      and config.label_setting in table
  ):
    return None
  return {task: ref for task, ref in table[config.label_setting].items() if task in config.tasks}


def evaluate(
    eval_fn,
    state,
    batches: Iterator[Mapping[str, np.ndarray]],
    mesh: jax.sharding.Mesh,
    tasks: Sequence[Task],
) -> dict[str, dict[str, float]]:
  """Runs `eval_fn` over every batch and finalises the split's metrics: {task: {metric: value}}.

  Each task's batch state goes through its `host_state` (if any) on the host, then batch states
  are merged in float64, so the numbers are sums over the whole split (never a mean of batch
  means); `task.finalize` turns them into numbers. A task with no ground truth in the split maps
  to {} (absent).
  """
  total = None
  for local_batch in batches:
    outputs = jax.device_get(eval_fn(state, sharding.global_batch(mesh, local_batch)))
    batch_state = {
        t.name: jax.tree.map(
            lambda x: np.asarray(x, np.float64),
            t.host_state(outputs[t.name]) if t.host_state else outputs[t.name],
        )
        for t in tasks
    }
    for t in tasks:  # ``eval_step(as_released=True)``'s extra states.
      if t.name + metrics.AS_RELEASED in outputs:
        batch_state[t.name + metrics.AS_RELEASED] = jax.tree.map(
            lambda x: np.asarray(x, np.float64), outputs[t.name + metrics.AS_RELEASED]
        )
    total = batch_state if total is None else metrics.merge(total, batch_state)
  if total is None:
    raise ValueError("the evaluation split yielded no batch")
  results = {t.name: t.finalize(total[t.name]) for t in tasks}
  for t in tasks:
    if t.name + metrics.AS_RELEASED in total:
      results[t.name + metrics.AS_RELEASED] = t.released_finalize(total[t.name + metrics.AS_RELEASED])
  return results


def resizes_back(config: ml_collections.ConfigDict) -> bool:
  """Whether evaluation resizes predictions back to the original size (``eval_step``'s
  ``resize_back``): the variable-size datasets under geometry "resize" (MTI-Net / MT-CP)."""
  return config.dataset.name in geometry.FITTED_DATASETS and config.dataset.geometry == "resize"


def image_panel(
    predict_fn,
    state,
    local_batch,
    mesh,
    tasks: Sequence[Task],
    count: int,
    resize_back: bool = False,
) -> np.ndarray:
  """uint8 [count, H, (1 + 2T) W, 3]: image | gt, prediction per task, for the first examples
  (each task's `to_rgb` of its ground truth and of its prediction in the ground truth's format;
  with ``resize_back`` the predictions resized into the batch's ``box`` as ``eval_step`` does)."""
  batch = sharding.global_batch(mesh, local_batch)
  predictions = multihost_utils.process_allgather(predict_fn(state, batch["image"]), tiled=True)
  batch = multihost_utils.process_allgather(batch, tiled=True)
  if resize_back:
    predictions = resize_predictions(predictions, jnp.asarray(batch["box"]), tasks)
  n = min(count, int(np.sum(batch["valid"] > 0)))
  columns = [np.round(np.clip(batch["image"][:n], 0, 1) * 255).astype(np.uint8)]
  for task in tasks:
    gt = np.asarray(batch[task.name][:n])
    pred = np.asarray(task.to_gt_format(predictions[task.name][:n]))
    columns += [task.to_rgb(gt, gt), task.to_rgb(pred, gt)]
  return np.concatenate(columns, axis=2)


def directions(tasks: Sequence[Task]) -> dict[str, bool]:
  """{metric: higher is better} of the tasks' records, Δm's signs (`metrics.delta_m`).

  Raises:
    ValueError: two tasks give one metric name opposite directions.
  """
  out = {}
  for t in tasks:
    for metric, higher in t.directions.items():
      if out.setdefault(metric, higher) != higher:
        raise ValueError(f"metric {metric!r} of task {t.name!r} has opposite directions in tasks")
  return out


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
  tasks = tasks_lib.from_config(config)
  results = evaluate(eval_fn, state, eval_ds.as_numpy_iterator(), mesh, tasks)
  scalars = flatten_results(results)
  absent = [t.name for t in tasks if not results.get(t.name)]
  released_references = as_released_references(config)
  if released_references is not None:
    released = metrics.delta_m_as_released(results, released_references, directions(tasks))
    if released is not None:
      scalars["eval/delta_m_as_released"] = released
  if absent:
    logging.info(
        "step %d: no ground truth in the %s split for %s (reported absent)",
        step,
        config.dataset.eval_split,
        absent,
    )
  delta_m = None if references is None else metrics.delta_m(results, references, directions(tasks))
  if delta_m is not None:
    scalars["eval/delta_m"] = delta_m
  writer.write_scalars(step, scalars)
  first = next(eval_ds.take(1).as_numpy_iterator())
  panel = image_panel(
      predict_fn, state, first, mesh, tasks, config.num_panel_images, resizes_back(config)
  )
  writer.write_images(step, {"eval/panel": panel})
  return results, delta_m
