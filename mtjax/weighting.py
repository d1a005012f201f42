"""Task weightings as Optax transforms whose state lives in the TrainState's optimizer state:
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

**One record per weighting.** ``create`` looks the name up in ``BUILDERS``; the builder returns a
``Weighting`` that carries all that differs between weightings: its transform, whether it uses
the log projection, its combine rule (``weighted_sum`` Σ_t w_t term_t, or
``kendall_uncertainty``) and its learnable params (``no_params``, or ``log_variances``). Adding a
weighting is adding a builder; no code branches on a weighting's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "BUILDERS",
    "ConstantWeightsState",
    "ETA",
    "EpochHistoryState",
    "NAMES",
    "UncertaintyState",
    "Weighting",
    "constant",
    "create",
    "current_weights",
    "dynamic_weight_average",
    "kendall_uncertainty",
    "log_variances",
    "loss_prioritization",
    "no_params",
    "project",
    "uncertainty",
    "weighted_sum",
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


# --------------------------------------------------------------------------------------------
# The configured weighting the train step uses
# --------------------------------------------------------------------------------------------

CombineFn = Callable[[jax.Array, dict, jax.Array], tuple[jax.Array, jax.Array]]
InitParamsFn = Callable[[int], dict]


def weighted_sum(terms: jax.Array, params: dict, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The combine rule of every weighting but ``uncertainty``: L = Σ_t w_t term_t (MT-CP Eq. 7).

  Args:
    terms: float32 [T], Σ_heads (n_t / B) f(ℓ_t) (``Weighting.combine``).
    params: the weighting's params, unused ({}).
    weights: float32 [T], ``current_weights`` of the optimizer state; constants of the step (no
      gradient flows into them).

  Returns:
    (loss, weights_used): float32 scalar and float32 [T].
  """
  del params
  used = jax.lax.stop_gradient(weights)
  return jnp.sum(used * terms), used


def no_params(num_tasks: int) -> dict:
  """The learnable params of a weighting without any: {}."""
  del num_tasks
  return {}


def kendall_uncertainty(
    terms: jax.Array, params: dict, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """``uncertainty``'s combine rule: Kendall, Gal, Cipolla (CVPR 2018) in MTAN's form,
  L = Σ_t ½ e^{−s_t} term_t + ½ s_t with learnable s_t = log σ_t².

  Args:
    terms: float32 [T], Σ_heads (n_t / B) f(ℓ_t) (``Weighting.combine``).
    params: {"log_var": s, float32 [T]} (``log_variances``).
    weights: the optimizer state's weights, unused (the weights come from the params).

  Returns:
    (loss, weights_used): float32 scalar and ½ e^{−s_t} float32 [T] (differentiable in s).
  """
  del weights
  log_var = params["log_var"]
  used = 0.5 * jnp.exp(-log_var)
  return jnp.sum(used * terms + 0.5 * log_var), used


def log_variances(num_tasks: int) -> dict:
  """``uncertainty``'s learnable params: {"log_var": s = zeros float32 [T]} (σ_t² = 1)."""
  return {"log_var": jnp.zeros((num_tasks,), jnp.float32)}


@dataclasses.dataclass(frozen=True)
class Weighting:
  """A task weighting as the train step uses it (``create``): everything that differs between
  weightings lives here, so code that uses one never branches on its name.

  Attributes:
    name: the name it was built under (a key of ``BUILDERS``).
    transform: chained after the optimizer; its state holds ``task_weights``.
    log_scale: whether the loss (and the history) use the log projection f (Eq. 3).
    num_tasks: T.
    combine_fn: (terms float32 [T], params, weights float32 [T]) → (loss float32 scalar,
      weights_used float32 [T]), the rule that turns the per-task terms into the loss
      (``weighted_sum`` by default; ``kendall_uncertainty`` for ``uncertainty``).
    init_params_fn: T → the weighting's learnable params (a pytree, trained with the model's
      optimizer; ``no_params`` by default).
  """

  name: str
  transform: optax.GradientTransformationExtraArgs
  log_scale: bool
  num_tasks: int
  combine_fn: CombineFn = weighted_sum
  init_params_fn: InitParamsFn = no_params

  def init_params(self) -> dict:
    """The weighting's learnable params, ``init_params_fn(num_tasks)``: {"log_var": zeros [T]}
    for ``uncertainty``, {} for the built-in others."""
    return self.init_params_fn(self.num_tasks)

  def combine(
      self,
      task_sums: jax.Array,
      task_counts: jax.Array,
      batch_size: int,
      params: dict,
      weights: jax.Array,
      head_weights: jax.Array | None = None,
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The weighted multi-task loss of one batch (module docstring; MT-CP Eq. 7's sum): the
    per-task terms Σ_heads v_k (n_t / B) f(ℓ_t), combined by ``combine_fn``.

    Args:
      task_sums: float32 [T], or [K, T] for K prediction heads (the final one first, then the
        deep-supervision ones): Σ_b m[b, t] L_t(b), the labelled examples' losses summed.
      task_counts: float32 [T], n_t = Σ_b m[b, t].
      batch_size: B (the global batch, padding included, as MTPSL's normalisation).
      params: the weighting's params (``init_params``).
      weights: float32 [T], ``current_weights`` of the optimizer state.
      head_weights: float32 [K], v_k, each head's factor (None: all 1; MT-CP halves its
        deep-supervision heads).

    Returns:
      (loss, task_means, weights_used): float32 scalar, summed over heads; ℓ_t float32 [T] of
      the first head (0 where n_t = 0); the weights applied, float32 [T].
    """
    task_sums = jnp.atleast_2d(task_sums)
    means = task_sums / jnp.maximum(task_counts, 1.0)
    v = jnp.ones(task_sums.shape[:1], jnp.float32) if head_weights is None else head_weights
    if self.log_scale:
      terms = jnp.sum(v[:, None] * (task_counts / batch_size * project(means, True)), axis=0)
    else:  # (n_t / B) ℓ_t, computed as MTPSL does: the same floats as the unweighted loss.
      terms = jnp.sum(v[:, None] * task_sums, axis=0) / batch_size
    loss, used = self.combine_fn(terms, params, weights)
    return loss, means[0], used


Builder = Callable[[Any, int, int], Weighting]


def _plain(options) -> None:
  """Rejects ``as_released`` for a weighting that has no released variant."""
  if options.as_released:
    raise ValueError(f"config.weighting.as_released applies to 'lps' only, not {options.name!r}")


def _build_equal(options, num_tasks: int, steps_per_epoch: int) -> Weighting:
  del steps_per_epoch
  _plain(options)
  return Weighting(options.name, constant((1.0,) * num_tasks), False, num_tasks)


def _build_log_smoothing(options, num_tasks: int, steps_per_epoch: int) -> Weighting:
  del steps_per_epoch
  _plain(options)
  return Weighting(options.name, constant((1.0,) * num_tasks), True, num_tasks)


def _build_fixed(options, num_tasks: int, steps_per_epoch: int) -> Weighting:
  del steps_per_epoch
  _plain(options)
  if len(options.fixed_weights) != num_tasks:
    raise ValueError(
        f"config.weighting.fixed_weights={tuple(options.fixed_weights)}: expected {num_tasks} "
        "weights, one per task of config.tasks, in its order"
    )
  return Weighting(options.name, constant(options.fixed_weights), False, num_tasks)


def _build_uncertainty(options, num_tasks: int, steps_per_epoch: int) -> Weighting:
  del steps_per_epoch
  _plain(options)
  transform = uncertainty(lambda tree: tree["weighting"]["log_var"])
  return Weighting(
      options.name,
      transform,
      False,
      num_tasks,
      combine_fn=kendall_uncertainty,
      init_params_fn=log_variances,
  )


def _build_dwa(options, num_tasks: int, steps_per_epoch: int) -> Weighting:
  _plain(options)
  transform = dynamic_weight_average(
      num_tasks, steps_per_epoch=steps_per_epoch, temperature=options.dwa_temperature
  )
  return Weighting(options.name, transform, False, num_tasks)


def _build_lps(
    options, num_tasks: int, steps_per_epoch: int, log_scale: bool = True
) -> Weighting:
  if options.as_released:  # Raw losses: the log projection is not the released rule's.
    transform = loss_prioritization(
        num_tasks,
        spread=options.spread,
        history=options.history,
        steps_per_epoch=steps_per_epoch,
        log_scale=None,
        min_weight=None,
        normalize=None,
        as_released=True,
    )
    return Weighting(options.name, transform, False, num_tasks)
  transform = loss_prioritization(
      num_tasks,
      spread=options.spread,
      history=options.history,
      steps_per_epoch=steps_per_epoch,
      log_scale=log_scale,
      min_weight=options.min_weight if options.min_weight > 0 else None,
      normalize=options.normalize,
  )
  return Weighting(options.name, transform, log_scale, num_tasks)


def _build_lps_no_log(options, num_tasks: int, steps_per_epoch: int) -> Weighting:
  _plain(options)
  return _build_lps(options, num_tasks, steps_per_epoch, log_scale=False)


BUILDERS: dict[str, Builder] = {
    "equal": _build_equal,
    "fixed": _build_fixed,
    "uncertainty": _build_uncertainty,
    "dwa": _build_dwa,
    "log_smoothing": _build_log_smoothing,
    "lps_no_log": _build_lps_no_log,
    "lps": _build_lps,
}
"""name → builder (config.weighting, T, steps_per_epoch) → ``Weighting``. A new weighting is one
entry here (its builder sets its transform, log projection, combine rule and params); nothing
else branches on a weighting's name."""

NAMES = tuple(BUILDERS)  # The built-in weightings.


def create(config, num_tasks: int, steps_per_epoch: int) -> Weighting:
  """The weighting of ``config.weighting`` (``name``, a key of ``BUILDERS``, and the options its
  builder reads: ``fixed_weights``, ``spread``, ``history``, ``min_weight``, ``normalize``,
  ``as_released``, ``dwa_temperature``), its weights applied to the loss unless
  ``apply_weights`` is False (``computed_not_applied``).

  Raises:
    ValueError: an unknown name or an invalid option (from the builders and transforms).
  """
  w = config.weighting
  if w.name not in BUILDERS:
    raise ValueError(f"config.weighting.name must be one of {tuple(BUILDERS)}, got {w.name!r}")
  built = BUILDERS[w.name](w, num_tasks, steps_per_epoch)
  if w.get("apply_weights", True):
    return built
  return dataclasses.replace(built, combine_fn=computed_not_applied(built.combine_fn))


def computed_not_applied(combine_fn: CombineFn) -> CombineFn:
  """``combine_fn`` with the weights computed but not applied: the loss combines the terms with
  weights 1, and the computed weights are returned (and logged) as they are. MT-CP's released
  training loop (``losses/loss_schemes.py`` ``MultiTaskLoss.forward``) computes its weighted
  total and then overwrites it with the unweighted sum (``config.weighting.apply_weights =
  False``)."""

  def combine(terms, params, weights):
    loss, _ = combine_fn(terms, params, jnp.ones_like(weights))
    return loss, weights

  return combine
