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
from mtjax.tasks import Task

def fit(
    examples: Iterable[Mapping[str, np.ndarray]], tasks: Sequence[str | Task], num_classes: int
) -> dict[str, dict[str, np.ndarray]]:
  """Fits the ``constant`` and ``per_pixel`` predictors of each task from train examples.

  Each task's record says what is averaged over its valid pixels (``Task.mean_value``: class
  one-hots, depths, normals, binary labels) and how a mean becomes a prediction
  (``Task.from_mean``: the majority class, the mean depth, the mean direction, the positive rate).
  ``constant`` averages over every pixel of the split; ``per_pixel`` per pixel position, falling
  back to the constant where a position never has ground truth.

  Args:
    examples: source examples (``mtjax.data.pipeline`` protocol); only the keys of `tasks` are
      read.
    tasks: task records or registered names (built with ``num_classes``).
    num_classes: the dataset's semantic classes.

  Returns:
    {"constant": {task: prediction}, "per_pixel": {task: prediction}} with predictions in the
    layout of one example's ground truth (broadcast for ``constant``).

  Raises:
    ValueError: an unknown task, no example, examples of different shapes, or a task without any
      valid ground truth.
  """
  records = tasks_lib.resolve(tasks, num_classes)
  if not records:
    raise ValueError("fit needs at least one task")
  sums: dict[str, np.ndarray] = {}
  counts: dict[str, np.ndarray] = {}
  shapes = None
  for ex in examples:
    ex_shapes = {t.name: np.shape(ex[t.name]) for t in records}
    if shapes is None:
      shapes = ex_shapes
    elif ex_shapes != shapes:
      raise ValueError(
          f"per-pixel baselines need examples of one shape: got {ex_shapes}, then {shapes}"
      )
    for t in records:
      gt = np.asarray(ex[t.name])
      valid = np.asarray(t.is_valid(gt))[..., None]
      sums[t.name] = np.where(valid, t.mean_value(gt), 0.0) + sums.get(t.name, 0)
      counts[t.name] = valid.astype(np.int64) + counts.get(t.name, 0)
  if shapes is None:
    raise ValueError("no train example to fit the baselines on")

  constant, per_pixel = {}, {}
  for t in records:
    total, count = sums[t.name].sum(axis=(0, 1)), counts[t.name].sum()
    if count == 0:
      raise ValueError(f"the train split has no valid {t.name} ground truth")
    constant[t.name] = np.broadcast_to(t.from_mean(total / count), shapes[t.name])
    seen = counts[t.name] > 0
    mean = sums[t.name] / np.maximum(counts[t.name], 1)
    pred = t.from_mean(np.where(seen, mean, total / count))
    per_pixel[t.name] = pred.astype(constant[t.name].dtype)
    constant[t.name] = np.ascontiguousarray(constant[t.name])
  return {"constant": constant, "per_pixel": per_pixel}


def evaluate(
    predictors: Mapping[str, Mapping[str, np.ndarray]],
    examples: Iterable[Mapping[str, np.ndarray]],
    num_classes: int,
    tasks: Sequence[Task] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
  """Scores fitted predictors (`fit`) on evaluation examples with each task's metric.

  Args:
    predictors: as `fit` returns. examples: evaluation examples.
    num_classes: the dataset's semantic classes (names in `predictors` are built with it).
    tasks: the records (default: the registered tasks of `predictors`' names).

  Returns:
    {predictor: {task: {metric: value}}} as each task's `finalize` (e.g. mIoU and pixel accuracy
    in %, depth errors in metres, normal angles in degrees).

  Raises:
    ValueError: no evaluation example, or shapes that differ from the fitted predictors'.
  """
  names = list(next(iter(predictors.values()), {}))
  records = {t.name: t for t in (tasks or tasks_lib.resolve(names, num_classes))}
  totals: dict[str, dict[str, dict]] = {name: {} for name in predictors}
  for chunk in _chunks(examples, 64):
    for name, preds in predictors.items():
      for t, pred in preds.items():
        task = records[t]
        gt = np.stack([np.asarray(ex[t]) for ex in chunk]).astype(pred.dtype)
        state = task.metric_state(np.broadcast_to(pred, gt.shape), gt)
        state = task.host_state(state) if task.host_state else state
        state = {k: np.asarray(v, np.float64) for k, v in state.items()}
        prev = totals[name].get(t)
        totals[name][t] = state if prev is None else metrics.merge(prev, state)
  if not any(totals.values()):
    raise ValueError("no evaluation example to score the baselines on")
  return {
      name: {t: records[t].finalize(state) for t, state in states.items()}
      for name, states in totals.items()
  }


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
  tasks = tasks_lib.from_config(config)
  train_source = create_source(config, config.dataset.train_split)
  eval_source = create_source(config, config.dataset.eval_split)
  predictors = fit(_examples(train_source), tasks, config.dataset.num_classes)
  results = evaluate(predictors, _examples(eval_source), config.dataset.num_classes, tasks)
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
