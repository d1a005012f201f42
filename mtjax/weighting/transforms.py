"""The task weightings' Optax transforms, whose state lives in the TrainState's optimizer state:
MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025) and the baselines of its Table 4.

Every weighting is an ``optax.GradientTransformationExtraArgs`` chained after the optimizer
(``mtjax.optimizer.create_optimizer``). Its ``update(updates, state, params, *, task_losses, task_counts)``
passes the updates through unchanged and reads the step's per-task losses:

* ``task_losses`` float32 [T]: ℓ_t, the mean loss of task t over the examples of the global batch
  labelled for it (0 where none is), *before* any log projection;
* ``task_counts`` float32 [T]: n_t, how many examples of the batch are labelled for t.

Under ``jit`` with the batch sharded over many devices both are global values (they come out of
the loss of the global batch), so the state is the same on every device. ``current_weights``
returns the weights w_t the next step's loss uses (``objective``):

    L = Σ_t w_t (n_t / B) f(ℓ_t)     f(ℓ) = log(ℓ + 1 + η) with the log projection, else ℓ.

Without a log projection and with w = 1 that is MTPSL's partial-label loss (1/B) Σ_b Σ_t m L_t.

**Epoch means with partial labels.** History-based weightings (``lps``, ``lps_no_log``, ``dwa``)
accumulate Σ n_t f(ℓ_t) and Σ n_t over an epoch (``steps_per_epoch`` updates), so a task's epoch
mean averages over the examples labelled for it only. A task with no labelled example in an
epoch keeps its previous mean; until every task has a mean in each epoch the rule needs, the
weights do not change.

**LPS** (docs/methods.md, "Task weightings", reconstructed; Eq. 3–7). With L̄_t^(e) the epoch-mean of
f(ℓ_t) (f the log projection, Eq. 3, η = 1e-6) and L̄^(e) = Σ_t L̄_t^(e), at the end of epoch e ≥ K:

    ŵ_t = (L̄_t^(e) / L̄_t^(e−K)) / (L̄^(e) / L̄^(e−K))       a task falling slower than the total gets ŵ_t > 1
    μ = mean_t ŵ_t,   w_t = μ + β (ŵ_t − μ)                  β = ``spread`` (Eq. 5–6)
    w_t ← max(w_t, min_weight);  w_t ← T w_t / Σ_s w_s       (ours, options)

and w_t = 1 before K + 1 epochs of history exist. ``as_released=True`` reproduces the released
code's rule instead: raw losses, K = 1, w_t = L̄^(0) / L̄_t^(0) after epoch 0, the spread step, no
clipping, no normalising (a weight can go negative).

**Baselines**: ``equal`` (w = 1), ``fixed`` (hand-set w_t, ``config.weighting.fixed_weights``),
``log_smoothing`` (w = 1, the log projection only),
``lps_no_log``, ``dwa`` (Liu, Johns, Davison, CVPR 2019, Eq. 7: w_t = T softmax_t(r_t / τ),
r_t = L̄_t^(e−1) / L̄_t^(e−2) on raw epoch means, τ = 2, w = 1 for the first two epochs),
``uncertainty`` (Kendall, Gal, Cipolla, CVPR 2018, in MTAN's form: learnable s_t = log σ_t² in
the params, L = Σ_t ½ e^{−s_t} term_t + ½ s_t; its "weights" ½ e^{−s_t} are kept in the state
for logging).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "ConstantWeightsState",
    "ETA",
    "EpochHistoryState",
    "UncertaintyState",
    "constant",
    "current_weights",
    "dynamic_weight_average",
    "loss_prioritization",
    "project",
    "uncertainty",
]


ETA = 1e-6  # Eq. 3's η.


def project(losses: jax.Array, log_scale: bool) -> jax.Array:
  """MT-CP's scale projection (Eq. 3): log(ℓ + 1 + η), η = 1e-6, elementwise; identity if not
  ``log_scale``. ℓ ≥ 0 float → float of the same shape (≥ log(1 + η) > 0)."""
  return jnp.log(losses + 1.0 + ETA) if log_scale else losses


class ConstantWeightsState(NamedTuple):
  """``equal`` / ``fixed`` / ``log_smoothing``: task_weights float32 [T], never changing."""

  task_weights: jax.Array


class UncertaintyState(NamedTuple):
  """``uncertainty``: task_weights float32 [T] = ½ exp(−s_t) of the params after the last update."""

  task_weights: jax.Array


class EpochHistoryState(NamedTuple):
  """History-based weightings (``lps``, ``lps_no_log``, ``dwa``).

  Attributes:
    count: int32, updates seen.
    sums: float32 [T], Σ n_t f(ℓ_t) over the current epoch's updates.
    counts: float32 [T], Σ n_t over the current epoch's updates.
    history: float32 [H, T], the last H epoch means, oldest first; NaN where unknown.
    epochs: int32, completed epochs.
    task_weights: float32 [T], the weights of the next step.
  """

  count: jax.Array
  sums: jax.Array
  counts: jax.Array
  history: jax.Array
  epochs: jax.Array
  task_weights: jax.Array


def current_weights(opt_state: optax.OptState) -> jax.Array:
  """The task weights the next step's loss uses, float32 [T], from a state holding one weighting.

  Raises:
    KeyError: ``opt_state`` holds no weighting transform's state.
  """
  weights = optax.tree_utils.tree_get(opt_state, "task_weights")
  if weights is None:
    raise KeyError("the optimizer state holds no task weighting (no 'task_weights' field)")
  return weights


def _check_stats(task_losses, task_counts, num_tasks):
  if task_losses is None:
    raise ValueError("a task weighting's update needs task_losses=[T] (the step's per-task losses)")
  task_losses = jnp.asarray(task_losses, jnp.float32)
  if task_losses.shape != (num_tasks,):
    raise ValueError(f"task_losses must have shape ({num_tasks},), got {task_losses.shape}")
  counts = (
      jnp.ones_like(task_losses) if task_counts is None else jnp.asarray(task_counts, jnp.float32)
  )
  return task_losses, counts


def constant(weights: Sequence[float]) -> optax.GradientTransformationExtraArgs:
  """``equal``, ``fixed`` and ``log_smoothing``: w = ``weights`` (T floats; 1 for ``equal``);
  updates pass through; the state never changes.

  Raises:
    ValueError: a weight that is negative or not finite.
  """
  weights = tuple(float(w) for w in weights)
  if not all(math.isfinite(w) and w >= 0 for w in weights):
    raise ValueError(f"task weights must be finite and >= 0, got {weights}")

  def init_fn(params):
    del params
    return ConstantWeightsState(task_weights=jnp.asarray(weights, jnp.float32))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def uncertainty(log_var: Callable[[Any], jax.Array]) -> optax.GradientTransformationExtraArgs:
  """Kendall et al.'s homoscedastic uncertainty weights, ½ exp(−s_t), for logging.

  The weights enter the loss through the params (``kendall_uncertainty``); this transform records
  them after each update so ``current_weights`` reports them. Chain it after the optimizer.

  Args:
    log_var: params tree → s, float32 [T].
  """

  def init_fn(params):
    return UncertaintyState(task_weights=0.5 * jnp.exp(-log_var(params)))

  def update_fn(updates, state, params=None, **extra_args):
    del state, extra_args
    if params is None:
      raise ValueError("the uncertainty weighting needs params")
    new = log_var(params) + log_var(updates)
    return updates, UncertaintyState(task_weights=0.5 * jnp.exp(-new).astype(jnp.float32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _epoch_history_transform(
    num_tasks: int,
    steps_per_epoch: int,
    rows: int,
    log_scale: bool,
    rule: Callable[[jax.Array, jax.Array], jax.Array],
    ready: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Accumulates epoch means of f(ℓ_t) (module docstring) and, at each epoch's end, sets
  ``task_weights = rule(history [rows, T], epochs_completed)`` when ``ready(history, epochs)``
  (default: every entry of the history is known), keeps the old weights otherwise."""
  if ready is None:
    ready = lambda history, epochs: jnp.all(jnp.isfinite(history))
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")

  def init_fn(params):
    del params
    zeros = jnp.zeros((num_tasks,), jnp.float32)
    return EpochHistoryState(
        count=jnp.zeros((), jnp.int32),
        sums=zeros,
        counts=zeros,
        history=jnp.full((rows, num_tasks), jnp.nan, jnp.float32),
        epochs=jnp.zeros((), jnp.int32),
        task_weights=jnp.ones((num_tasks,), jnp.float32),
    )

  def update_fn(updates, state, params=None, *, task_losses=None, task_counts=None, **extra_args):
    del params, extra_args
    losses, counts = _check_stats(task_losses, task_counts, num_tasks)
    sums = state.sums + counts * project(losses, log_scale)
    counts = state.counts + counts
    count = state.count + 1
    end = count % steps_per_epoch == 0

    previous = state.history[-1]
    mean = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), previous)
    history = jnp.concatenate([state.history[1:], mean[None]], axis=0)
    epochs = state.epochs + 1
    weights = jnp.where(ready(history, epochs), rule(history, epochs), state.task_weights)

    zeros = jnp.zeros_like(sums)
    new_state = EpochHistoryState(
        count=count,
        sums=jnp.where(end, zeros, sums),
        counts=jnp.where(end, zeros, counts),
        history=jnp.where(end, history, state.history),
        epochs=jnp.where(end, epochs, state.epochs),
        task_weights=jnp.where(end, weights, state.task_weights).astype(jnp.float32),
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def loss_prioritization(
    num_tasks: int,
    *,
    spread: float,
    history: int,
    steps_per_epoch: int,
    log_scale: bool | None = None,
    min_weight: float | None = 0.05,
    normalize: bool | None = True,
    as_released: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025; docs/methods.md; Eq. 3–6).

  Args:
    num_tasks: T.
    spread: β (Eq. 5–6); 7.5 in the released NYUD config, 2.5 in the paper's text.
    history: K ≥ 1, epochs between the compared means.
    steps_per_epoch: updates per epoch.
    log_scale: epoch means of log(ℓ + 1 + η) (default True); False: raw losses (``lps_no_log``).
    min_weight: floor of the weights after the spread step (ours; None: no clipping).
    normalize: rescale to Σ_t w_t = T after clipping (ours).
    as_released: the released code's rule (module docstring). Requires ``history`` = 1 and
      leaves ``log_scale``, ``min_weight``, ``normalize`` at None (they are implied: raw, none).

  Returns:
    A transform whose state is an ``EpochHistoryState`` (``current_weights`` reads it); its
    ``update`` takes ``task_losses`` [T] and ``task_counts`` [T] (module docstring).

  Raises:
    ValueError: history < 1, steps_per_epoch < 1, min_weight ≤ 0, or ``as_released`` with
      options it fixes.
  """
  if history < 1:
    raise ValueError(f"LPS history K must be >= 1, got {history}")
  if as_released:
    if history != 1 or log_scale or min_weight is not None or normalize:
      raise ValueError(
          "as_released=True is the released rule (raw losses, K = 1, no clipping, no "
          f"normalising); got history={history}, log_scale={log_scale}, "
          f"min_weight={min_weight}, normalize={normalize}: pass history=1, log_scale=None, "
          "min_weight=None, normalize=None"
      )
  if min_weight is not None and min_weight <= 0:
    raise ValueError(f"min_weight must be > 0 or None, got {min_weight}")
  log_scale = (not as_released) if log_scale is None else log_scale

  def spread_step(history_rows):
    current, old = history_rows[-1], history_rows[0]
    ratio = (current / old) / (jnp.sum(current) / jnp.sum(old))
    mu = jnp.mean(ratio)
    return mu + spread * (ratio - mu)

  def rule(history_rows, epochs):
    if as_released:  # Epoch 0: every weighted term equal to the total.
      first = jnp.sum(history_rows[-1]) / history_rows[-1]
      return jnp.where(epochs == 1, first, spread_step(history_rows))
    weights = spread_step(history_rows)
    if min_weight is not None:
      weights = jnp.maximum(weights, min_weight)
    if normalize:
      weights = num_tasks * weights / jnp.sum(weights)
    return weights

  def released_ready(history_rows, epochs):  # Epoch 0's rule needs only the newest means.
    newest, every = jnp.all(jnp.isfinite(history_rows[-1])), jnp.all(jnp.isfinite(history_rows))
    return jnp.where(epochs == 1, newest, every)

  return _epoch_history_transform(
      num_tasks,
      steps_per_epoch,
      history + 1,
      log_scale,
      rule,
      released_ready if as_released else None,
  )


def dynamic_weight_average(
    num_tasks: int, *, steps_per_epoch: int, temperature: float = 2.0
) -> optax.GradientTransformationExtraArgs:
  """DWA (Liu, Johns, Davison, CVPR 2019, Eq. 7): w_t = T exp(r_t/τ) / Σ_s exp(r_s/τ),
  r_t = L̄_t^(e−1) / L̄_t^(e−2) on raw epoch-mean losses; w = 1 for the first two epochs.

  Raises:
    ValueError: temperature ≤ 0, steps_per_epoch < 1.
  """
  if temperature <= 0:
    raise ValueError(f"DWA temperature must be > 0, got {temperature}")

  def rule(history_rows, epochs):
    del epochs
    ratio = history_rows[-1] / history_rows[0]
    return num_tasks * jax.nn.softmax(ratio / temperature)

  return _epoch_history_transform(num_tasks, steps_per_epoch, 2, False, rule)
