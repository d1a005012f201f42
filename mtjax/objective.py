"""The training objective, composed in one place: the weighted per-task partial-label losses
(`mtjax.tasks.partial_label_terms`, `mtjax.weighting`) plus λ times the regularizer's loss
(`mtjax.regularizers`).

    L = Σ_heads Σ_t w_t (n_t / B) f(ℓ_t)  +  λ · L_reg

ℓ_t is the mean loss of task t over the n_t examples of the batch labelled for it, f the task
weighting's log projection or the identity, w_t the weighting's current weights (MT-CP Eq. 7).
With equal weights and no projection the first term is MTPSL's (1/B) Σ_b Σ_t m[b, t] L_t. The
heads are the model's final predictions and, when the model returns them under
`"deep_supervision"` (a sequence of dicts shaped like the predictions), its intermediate ones,
with the same task weights, each head's terms times its `"weight"` (a Python float in the head's
dict; 1 when absent; MT-CP's released loop halves its intermediate heads). `train.train_step` differentiates `objective` once, with respect to the
model's, the regularizer's and the weighting's parameters together.

A regularizer with `views == 2` (MTPSL's xtc) sees a second augmented view: the batch's `view2/*`
keys. Both views go through the model as one batch (as MTPSL concatenates them, so BatchNorm's
batch statistics cover both); the supervised loss reads the first view's predictions, the
regularizer the second's, with the second's ground truths and, if it `needs_features`, the model's
features of the second view (`mtjax.models.features`).
"""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.models import FEATURES, features
from mtjax.regularizers import Regularizer
from mtjax.tasks import Task, partial_label_terms
from mtjax.weighting import Weighting

__all__ = ["DEEP_SUPERVISION", "Views", "forward_views", "objective", "term_gradient_norms"]

DEEP_SUPERVISION = "deep_supervision"


class Views(NamedTuple):
  """The model's forward pass over a batch, split into what the supervised loss and the
  regularizer read (``forward_views``)."""

  predictions: dict  # The first view's outputs: task name -> [B, ...] (and "deep_supervision").
  reg_predictions: Mapping  # The regularizer's view's outputs, [B, ...] each.
  reg_batch: Mapping  # The regularizer's view of the batch: its ground truths under the plain keys.
  features: dict  # The model's features of the regularizer's view (empty unless it needs them).
  updates: dict  # The model's mutable updates ("batch_stats" over every view forwarded).


def forward_views(
    model_params,
    batch_stats,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    regularizer: Regularizer | None,
    rng: jax.Array,
) -> Views:
  """The model in training mode on a batch, and the view each loss term reads (module docstring).

  With ``regularizer.views == 2`` the images [B, H, W, 3] and ``view2/image`` go through the model
  as one batch of 2B (BatchNorm's statistics over both, as MTPSL and RDC's released code do); the
  supervised loss reads the first B outputs, the regularizer the last B with the batch's
  ``view2/<key>`` ground truths renamed ``<key>`` (the other keys, ``label_mask`` and ``valid``
  among them, shared). Otherwise both read the one forward pass.

  Args:
    model_params: the model's params; batch_stats: its BatchNorm statistics.
    batch: the global batch (``objective``'s; ``view2/*`` keys when the regularizer has 2 views).
    model: the network; regularizer: None or ``mtjax.regularizers.create``'s record (its
      ``views`` and ``needs_features``).
    rng: the model's dropout key.

  Returns:
    ``Views``.

  Raises:
    KeyError: ``view2/image`` missing with two views.
  """
  views = 1 if regularizer is None else regularizer.views
  needs_features = regularizer is not None and regularizer.needs_features
  images = batch["image"]
  if views == 2:
    images = jnp.concatenate([images, batch["view2/image"]])
  outputs, updates = model.apply(
      {"params": model_params, "batch_stats": batch_stats},
      images,
      train=True,
      mutable=["batch_stats", *([FEATURES] if needs_features else [])],
      rngs={"dropout": rng},
  )
  feats = features(updates)
  predictions, reg_batch, reg_predictions = dict(outputs), batch, outputs
  if views == 2:
    size = batch["image"].shape[0]
    predictions = jax.tree.map(lambda x: x[:size], dict(outputs))
    reg_predictions = jax.tree.map(lambda x: x[size:], dict(outputs))
    feats = jax.tree.map(lambda x: x[size:], feats)
    reg_batch = {k: v for k, v in batch.items() if not k.startswith("view2/")}
    reg_batch.update({k[len("view2/") :]: v for k, v in batch.items() if k.startswith("view2/")})
  return Views(predictions, reg_predictions, reg_batch, feats, updates)


def _terms(params, batch_stats, batch, *, model, tasks, regularizer, rng, reg_state=None):
  """The forward pass and the loss terms before weighting: (task_sums float32 [K, T] over the K
  heads, head_weights float32 [K], task_counts [T], B, the regularizer's (loss, logs, new state)
  or None, the model's mutable updates)."""
  model_rng, reg_rng = rng, jax.random.fold_in(rng, 1)  # The model's key as without a regularizer.
  predictions, reg_predictions, reg_batch, feats, updates = forward_views(
      params["model"], batch_stats, batch, model=model, regularizer=regularizer, rng=model_rng
  )
  heads = [predictions, *predictions.pop(DEEP_SUPERVISION, ())]
  head_weights = jnp.asarray([float(head.get("weight", 1.0)) for head in heads], jnp.float32)
  terms = [partial_label_terms(head, batch, tasks) for head in heads]
  sums = jnp.stack([s for s, _, _ in terms])
  counts, batch_size = terms[0][1], terms[0][2]
  reg = None
  if regularizer is not None:
    args = (params["regularizer"], reg_predictions, reg_batch, reg_rng, feats)
    if regularizer.stateful:
      reg = regularizer.loss(*args, state=reg_state)
    else:
      reg = (*regularizer.loss(*args), reg_state)
  return sums, head_weights, counts, batch_size, reg, updates


def objective(
    params: Mapping[str, object],
    batch_stats,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tasks: Sequence[Task],
    regularizer: Regularizer | None,
    rng: jax.Array,
    task_weighting: Weighting,
    task_weights: jax.Array,
    reg_state=None,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], object, tuple[jax.Array, jax.Array], object]]:
  """The loss of one training batch, what to log, and the task statistics a weighting reads.

  Args:
    params: {"model": the model's params, "regularizer": the regularizer's params ({} if none),
      "weighting": the task weighting's params ({} but for uncertainty)}.
    batch_stats: the model's BatchNorm statistics.
    batch: the global batch (SPEC: image [B, H, W, 3], task ground truths, label_mask [B, T],
      and the regularizer's `batch_keys`).
    model, tasks: the network and its tasks (label_mask column order).
    regularizer: None, or the record of `mtjax.regularizers.create`.
    rng: the step's key (dropout, the regularizer's sampling).
    task_weighting: `mtjax.weighting.create`'s record.
    task_weights: float32 [T], `mtjax.weighting.current_weights` of the optimizer state.
    reg_state: the regularizer's state (`Regularizer.init_state`; passed to a stateful one).

  Returns:
    (loss, (logs, new_batch_stats, (task_losses, task_counts), new_reg_state)): loss float32
    scalar; logs
    float32 scalars "loss", "loss/<task>" ((1/B) Σ_b m L_t of the final predictions, unweighted),
    "weight/<task>", and with a regularizer "loss/<name>" (unweighted) and "<name>/<log>";
    task_losses float32 [T] the ℓ_t and task_counts float32 [T] the n_t of the final predictions
    (a weighting's `update` arguments); new_reg_state the regularizer's state after the batch
    (``reg_state`` unchanged for a stateless one).
  """
  sums, head_weights, counts, batch_size, reg, updates = _terms(
      params,
      batch_stats,
      batch,
      model=model,
      tasks=tasks,
      regularizer=regularizer,
      rng=rng,
      reg_state=reg_state,
  )
  loss, task_losses, used = task_weighting.combine(
      sums, counts, batch_size, params["weighting"], task_weights, head_weights
  )
  logs = {f"loss/{task.name}": sums[0, t] / batch_size for t, task in enumerate(tasks)}
  logs.update({f"weight/{task.name}": used[t] for t, task in enumerate(tasks)})
  new_reg_state = reg_state
  if regularizer is not None:
    reg_loss, reg_logs, new_reg_state = reg
    loss = loss + regularizer.weight * reg_loss
    logs[f"loss/{regularizer.name}"] = reg_loss
    logs.update({f"{regularizer.name}/{k}": v for k, v in reg_logs.items()})
  logs["loss"] = loss
  return loss, (logs, updates["batch_stats"], (task_losses, counts), new_reg_state)


def term_gradient_norms(
    params: Mapping[str, object],
    batch_stats,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tasks: Sequence[Task],
    regularizer: Regularizer | None,
    rng: jax.Array,
    task_weighting: Weighting,
    task_weights: jax.Array,
    reg_state=None,
) -> dict[str, jax.Array]:
  """The L2 norm of the gradient each term of ``objective`` sends into the model's parameters.

  Per task t, the term as it enters the loss (its weight, its n_t / B and the weighting's
  projection included, summed over the heads), and λ · L_reg for the regularizer: with
  c = ∂L / ∂(task sums) (the weighting's combine, differentiated: tiny), the term's gradient is
  the VJP of params → (task sums, L_reg) with the cotangent c masked to that term. One forward
  pass and one VJP per term; ``train.train_and_evaluate`` calls it at log steps only.

  Args:
    as ``objective`` (a stateful regularizer reads ``reg_state``; its update is dropped).

  Returns:
    float32 scalars "grad_norm/<task>"; "grad_norm/supervised", of the weighted task terms'
    summed gradient; with a regularizer "grad_norm/<regularizer name>" and "grad_cos/<regularizer
    name>", the cosine between its gradient and the supervised one (0 when either is 0); and
    "grad_norm/total", of the whole objective's gradient into the model's parameters.
  """

  def forward(model_params):
    p = {**params, "model": model_params}
    sums, head_weights, counts, batch_size, reg, _ = _terms(
        p,
        batch_stats,
        batch,
        model=model,
        tasks=tasks,
        regularizer=regularizer,
        rng=rng,
        reg_state=reg_state,
    )
    reg_loss = jnp.zeros((), jnp.float32) if reg is None else reg[0]
    return (sums, reg_loss), (counts, batch_size, head_weights)

  (sums, _), vjp, (counts, batch_size, head_weights) = jax.vjp(
      forward, params["model"], has_aux=True
  )
  combine = lambda x: task_weighting.combine(
      x, counts, batch_size, params["weighting"], task_weights, head_weights
  )[0]
  c = jax.grad(combine)(sums)  # [K, T]
  weight = 0.0 if regularizer is None else regularizer.weight
  zero = jnp.zeros((), jnp.float32)
  dot = lambda g, h: sum(
      jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32))
      for x, y in zip(jax.tree.leaves(g), jax.tree.leaves(h))
  )
  norm = lambda g: jnp.sqrt(dot(g, g))
  out = {}
  for t, task in enumerate(tasks):
    cotangent = c * (jnp.arange(c.shape[-1]) == t)
    out[f"grad_norm/{task.name}"] = norm(vjp((cotangent, zero))[0])
  supervised = vjp((c, zero))[0]
  out["grad_norm/supervised"] = norm(supervised)
  if regularizer is not None:
    reg_grad = vjp((jnp.zeros_like(c), jnp.asarray(weight, jnp.float32)))[0]
    reg_norm = norm(reg_grad)
    out[f"grad_norm/{regularizer.name}"] = reg_norm
    denominator = out["grad_norm/supervised"] * reg_norm
    out[f"grad_cos/{regularizer.name}"] = jnp.where(
        denominator > 0, dot(supervised, reg_grad) / jnp.where(denominator > 0, denominator, 1), 0
    )
  out["grad_norm/total"] = norm(vjp((c, jnp.asarray(weight, jnp.float32)))[0])
  return out
