"""Tasks: one record per dense prediction task (``Task``), a registry of them, and the partially
supervised loss over a set of them.

A batch carries each task's ground truth under the task's name; the built-in tasks (one module each):

  semseg       int32   [B, H, W]     class ids, −1 = ignore                     (semseg.py)
  depth        float32 [B, H, W, 1]  metres (or disparity), 0 = invalid          (depth.py)
  normal       float32 [B, H, W, 3]  unit vectors, all-zero = invalid           (normal.py)
  edge         float32 [B, H, W, 1]  1 boundary / 0 not, 255 = ignore            (edge.py)
  saliency     float32 [B, H, W, 1]  1 salient / 0 not, 255 = ignore             (saliency.py)
  human_parts  int32   [B, H, W]     7 part classes incl. background, −1 = ignore (human_parts.py)

Losses return one value per example, the mean over that example's valid pixels (0 where it has
none), so that partial labels can be applied per example by ``partial_label_loss``. A new task is a
module that builds a ``Task`` and calls ``register``; nothing else in mtjax changes.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from mtjax.tasks.base import Task, get_task, names, register, unregister
from mtjax.tasks.depth import depth_loss, depth_to_rgb
from mtjax.tasks.normal import normal_loss, normal_to_rgb
from mtjax.tasks.semseg import semseg_loss, semseg_to_rgb
from mtjax.tasks import edge, human_parts, saliency  # pylint: disable=g-bad-import-order  # Registers.

__all__ = [
    "Task",
    "depth_loss",
    "depth_to_rgb",
    "from_config",
    "get_task",
    "get_tasks",
    "names",
    "normal_loss",
    "normal_to_rgb",
    "partial_label_loss",
    "partial_label_terms",
    "register",
    "resolve",
    "semseg_loss",
    "semseg_to_rgb",
    "unregister",
]
del edge, human_parts, saliency


def get_tasks(
    names_: Sequence[str],
    *,
    num_classes: int | None = None,
    options: Mapping[str, Mapping] | None = None,
) -> tuple[Task, ...]:
  """The Task records for ``names_``, in that order.

  Args:
    names_: task names (``names()`` lists the registered ones).
    num_classes: the dataset's semantic classes (the semseg head's channels; None: no head size).
    options: task name -> that task's options (``config.task_options``); absent: defaults.

  Raises:
    ValueError: no name, a name that is not a registered task, a repeated name, or bad options.
  """
  options = options or {}
  known = names()
  unknown = [n for n in names_ if n not in known]
  if unknown or len(set(names_)) != len(names_) or not names_:
    raise ValueError(
        f"config.tasks={tuple(names_)!r}: expected a non-empty list of distinct task names from "
        f"{known}; unknown: {unknown}"
    )
  return tuple(get_task(n, num_classes=num_classes, **dict(options.get(n, {}))) for n in names_)


def from_config(config) -> tuple[Task, ...]:
  """The records of ``config.tasks`` with ``config.dataset.num_classes`` and
  ``config.task_options`` (per task name; a task without an entry takes its defaults).

  Options of tasks not in ``config.tasks`` are not used.

  Raises:
    ValueError: as ``get_tasks``.
  """
  options = {k: dict(v) for k, v in config.get("task_options", {}).items()}
  return get_tasks(tuple(config.tasks), num_classes=config.dataset.num_classes, options=options)


def resolve(tasks: Sequence[str | Task], num_classes: int | None = None) -> tuple[Task, ...]:
  """Records for a mix of records and names (names built with ``num_classes`` and defaults).

  Raises:
    ValueError: an unknown name.
  """
  return tuple(
      t if isinstance(t, Task) else get_task(t, num_classes=num_classes) for t in tasks
  )


def partial_label_terms(
    predictions: Mapping[str, jax.Array],
    batch: Mapping[str, jax.Array],
    tasks: Sequence[Task],
) -> tuple[jax.Array, jax.Array, int]:
  """Per-task sums of the labelled examples' losses, what task weightings and MTPSL's loss use.

  Args:
    predictions, batch, tasks: as `partial_label_loss`.

  Returns:
    (sums, counts, batch_size): sums float32 [T], Σ_b m[b, t] L_t(pred_b, gt_b); counts float32
    [T], n_t = Σ_b m[b, t] (padding excluded); batch_size B, the global batch size.
  """
  mask = batch["label_mask"]
  if "valid" in batch:
    mask = mask * batch["valid"][:, None]
  sums = jnp.stack(
      [
          jnp.sum(mask[:, t] * task.loss(predictions[task.name], batch[task.name]))
          for t, task in enumerate(tasks)
      ]
  )
  return sums, jnp.sum(mask, axis=0), mask.shape[0]


def partial_label_loss(
    predictions: Mapping[str, jax.Array],
    batch: Mapping[str, jax.Array],
    tasks: Sequence[Task],
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """MTPSL's partially supervised loss: only each example's labelled tasks count.

  L = (1/B) Σ_b Σ_t m[b, t] · L_t(pred_b, gt_b)   (docs/metrics.md, MTPSL's normalisation)

  Args:
    predictions: task name -> model output [B, H, W, ...] (see `Task`).
    batch: task name -> ground truth [B, H, W, ...]; "label_mask" float32 [B, T] in `tasks` order
      (1 = the task's ground truth is used for that example); optional "valid" float32 [B]
      (0 = padding, never counts). B is the global batch size.
    tasks: the T tasks, in label_mask column order.

  Returns:
    (loss, task_losses): loss float32 scalar; task_losses {name: float32 scalar}, the per-task
    terms (1/B) Σ_b m[b, t] L_t, so loss == Σ_t task_losses[t] (the form a task weighting rescales).
  """
  sums, _, batch_size = partial_label_terms(predictions, batch, tasks)
  task_losses = {task.name: sums[t] / batch_size for t, task in enumerate(tasks)}
  return sum(task_losses.values()), task_losses
