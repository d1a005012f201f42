"""Trivial baselines ("chance") for a dataset's evaluation split: what a model must clearly beat.

    python -m mtjax.baselines --config configs/demo.py

Two input-blind predictors are fitted on the ground truth of the whole train split (every label,
whatever `config.label_setting` says: the strongest such baseline) and scored with `mtjax.metrics`
on `config.dataset.eval_split`:

* ``constant``: one prediction everywhere: the most frequent class, the mean valid depth (metres),
  the normalised mean valid normal.
* ``per_pixel``: the same statistics per pixel position (a position prior, e.g. floor at the bottom).
  A pixel with no valid depth or normal in any train image takes the constant prediction.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from mtjax import metrics
from mtjax import tasks as tasks_lib

_TASKS = ("semseg", "depth", "normal")


def fit(
    examples: Iterable[Mapping[str, np.ndarray]], tasks: Sequence[str], num_classes: int
) -> dict[str, dict[str, np.ndarray]]:
  """Fits the ``constant`` and ``per_pixel`` predictors of each task from train examples.

  Args:
    examples: source examples (``mtjax.data.pipeline`` protocol): ``semseg`` int [H, W] (classes
      0..num_classes-1, others ignored), ``depth`` float [H, W, 1] metres (<= 0 invalid),
      ``normal`` float [H, W, 3] (all-zero invalid); only the keys of `tasks` are read.
    tasks: a subset of ("semseg", "depth", "normal").
    num_classes: semantic classes C.

  Returns:
    {"constant": {task: prediction}, "per_pixel": {task: prediction}} with predictions shaped as
    one example's ground truth: semseg int32 [H, W] class ids, depth float32 [H, W, 1] metres,
    normal float32 [H, W, 3] unit vectors (broadcast for ``constant``).

  Raises:
    ValueError: an unknown task, no example, examples of different shapes, or a task without any
      valid ground truth.
  """
  unknown = [t for t in tasks if t not in _TASKS]
  if unknown or not tasks:
    raise ValueError(f"tasks {tuple(tasks)}: expected a non-empty subset of {_TASKS}")
  sums: dict[str, np.ndarray] = {}
  counts: dict[str, np.ndarray] = {}
  shapes = None
  for ex in examples:
    ex_shapes = {t: np.shape(ex[t]) for t in tasks}
    if shapes is None:
      shapes = ex_shapes
    elif ex_shapes != shapes:
      raise ValueError(
          f"per-pixel baselines need examples of one shape: got {ex_shapes}, then {shapes}"
      )
    for t in tasks:
      gt = np.asarray(ex[t])
      if t == "semseg":  # Per-pixel class counts.
        valid = (gt >= 0) & (gt < num_classes)
        value = np.eye(num_classes, dtype=np.int64)[np.where(valid, gt, 0)] * valid[..., None]
      elif t == "depth":  # Per-pixel sums of valid depth, and their counts.
        valid = gt > 0
        value = np.where(valid, gt, 0).astype(np.float64)
        counts[t] = valid.astype(np.int64) + counts.get(t, 0)
      else:  # Per-pixel sums of valid normals (invalid ones are all-zero).
        value = gt.astype(np.float64)
      sums[t] = value + sums.get(t, 0)
  if shapes is None:
    raise ValueError("no train example to fit the baselines on")

  constant, per_pixel = {}, {}
  for t in tasks:
    total = sums[t].sum(axis=(0, 1))
    if not np.any(total):
      raise ValueError(f"the train split has no valid {t} ground truth")
    if t == "semseg":
      constant[t] = np.full(shapes[t], np.argmax(total), np.int32)
      per_pixel[t] = np.where(sums[t].sum(-1) > 0, np.argmax(sums[t], -1), constant[t]).astype(
          np.int32
      )
    elif t == "depth":
      constant[t] = np.full(shapes[t], total[0] / counts[t].sum(), np.float32)
      seen = counts[t] > 0
      per_pixel[t] = np.where(seen, sums[t] / np.maximum(counts[t], 1), constant[t])
    else:
      direction = total / np.linalg.norm(total)
      constant[t] = np.broadcast_to(direction, shapes[t]).astype(np.float32)
      norm = np.linalg.norm(sums[t], axis=-1, keepdims=True)
      per_pixel[t] = np.where(norm > 0, sums[t] / np.maximum(norm, 1e-300), constant[t])
    per_pixel[t] = per_pixel[t].astype(constant[t].dtype)
  return {"constant": constant, "per_pixel": per_pixel}


def evaluate(
    predictors: Mapping[str, Mapping[str, np.ndarray]],
    examples: Iterable[Mapping[str, np.ndarray]],
    num_classes: int,
) -> dict[str, dict[str, dict[str, float]]]:
  """Scores fitted predictors (`fit`) on evaluation examples with the field's metrics.

  Returns:
    {predictor: {task: {metric: value}}} as `mtjax.metrics.finalize` (mIoU and pixel accuracy in
    %, depth errors in metres, normal angles in degrees).

  Raises:
    ValueError: no evaluation example, or shapes that differ from the fitted predictors'.
  """
  totals: dict[str, dict[str, dict]] = {name: {} for name in predictors}
  for chunk in _chunks(examples, 64):
    for name, preds in predictors.items():
      for t, pred in preds.items():
        gt = np.stack([np.asarray(ex[t]) for ex in chunk]).astype(pred.dtype)
        state = tasks_lib.metric_state(t, np.broadcast_to(pred, gt.shape), gt, num_classes)
        state = {k: np.asarray(v, np.float64) for k, v in state.items()}
        prev = totals[name].get(t)
        totals[name][t] = state if prev is None else metrics.merge(prev, state)
  if not any(totals.values()):
    raise ValueError("no evaluation example to score the baselines on")
  return {name: metrics.finalize_all(states) for name, states in totals.items()}


def _chunks(examples: Iterable, size: int) -> Iterable[list]:
  chunk = []
  for ex in examples:
    chunk.append(ex)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _examples(source) -> Iterable[Mapping[str, np.ndarray]]:
  return (source.load(i) for i in range(source.num_examples))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from mtjax.data.sources import create_source  # Deferred: the functions above need no data stack.

  logging.get_absl_handler().python_handler.stream = sys.stdout
  config = flags.FLAGS.config
  tasks = tuple(config.tasks)
  train_source = create_source(config, config.dataset.train_split)
  eval_source = create_source(config, config.dataset.eval_split)
  predictors = fit(_examples(train_source), tasks, config.dataset.num_classes)
  results = evaluate(predictors, _examples(eval_source), config.dataset.num_classes)
  print(
      f"{config.dataset.name} baselines fitted on {config.dataset.train_split} "
      f"({train_source.num_examples}), scored on {config.dataset.eval_split} "
      f"({eval_source.num_examples})"
  )
  for name, per_task in results.items():
    for task, values in per_task.items():
      print(f"{name:9s} {task:7s} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))


if __name__ == "__main__":
  config_flags.DEFINE_config_file(
      "config", None, "Training configuration (its dataset and tasks).", lock_config=True
  )
  flags.mark_flags_as_required(["config"])
  app.run(main)
