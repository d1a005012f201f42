"""The training objective, composed in one place: the per-task partial-label losses
(`mtjax.tasks.partial_label_loss`) plus λ times the regularizer's loss (`mtjax.regularizers`).

    L = Σ_t (1/B) Σ_b m[b, t] L_t  +  λ · L_reg

`train.train_step` differentiates `objective` once, with respect to the model's and the
regularizer's parameters together.
"""

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax

from mtjax.regularizers import Regularizer
from mtjax.tasks import Task, partial_label_loss


def objective(
    params: Mapping[str, object],
    batch_stats,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tasks: Sequence[Task],
    regularizer: Regularizer | None,
    rng: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], object]]:
  """The loss of one training batch and what to log.

  Args:
    params: {"model": the model's params, "regularizer": the regularizer's params ({} if none)}.
    batch_stats: the model's BatchNorm statistics.
    batch: the global batch (SPEC: image [B, H, W, 3], task ground truths, label_mask [B, T],
      and the regularizer's `batch_keys`).
    model, tasks: the network and its tasks (label_mask column order).
    regularizer: None, or the record of `mtjax.regularizers.create`.
    rng: the step's key (dropout, the regularizer's sampling).

  Returns:
    (loss, (logs, new_batch_stats)): loss float32 scalar; logs float32 scalars "loss",
    "loss/<task>", and with a regularizer "loss/<name>" (unweighted) and "<name>/<log>".
  """
  model_rng, reg_rng = rng, jax.random.fold_in(rng, 1)  # The model's key as without a regularizer.
  predictions, updates = model.apply(
      {"params": params["model"], "batch_stats": batch_stats},
      batch["image"],
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": model_rng},
  )
  loss, task_losses = partial_label_loss(predictions, batch, tasks)
  logs = {f"loss/{name}": value for name, value in task_losses.items()}
  if regularizer is not None:
    reg_loss, reg_logs = regularizer.loss(params["regularizer"], predictions, batch, reg_rng)
    loss = loss + regularizer.weight * reg_loss
    logs[f"loss/{regularizer.name}"] = reg_loss
    logs.update({f"{regularizer.name}/{k}": v for k, v in reg_logs.items()})
  logs["loss"] = loss
  return loss, (logs, updates["batch_stats"])
