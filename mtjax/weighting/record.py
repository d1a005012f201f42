"""A task weighting as the train step uses it: one ``Weighting`` record per weighting, built from
``config.weighting`` by ``create``.

``create`` looks the name up in ``BUILDERS``; the builder returns a
``Weighting`` that carries all that differs between weightings: its transform, whether it uses
the log projection, its combine rule (``weighted_sum`` Σ_t w_t term_t, or
``kendall_uncertainty``) and its learnable params (``no_params``, or ``log_variances``). Adding a
weighting is adding a builder; no code branches on a weighting's name.

The transforms, the loss the weights enter and the epoch-mean rules are in
``mtjax.weighting.transforms``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mtjax.weighting.transforms import (
    constant,
    dynamic_weight_average,
    loss_prioritization,
    project,
    uncertainty,
)

__all__ = [
    "BUILDERS",
    "CombineFn",
    "NAMES",
    "Weighting",
    "computed_not_applied",
    "create",
    "kendall_uncertainty",
    "log_variances",
    "no_params",
    "weighted_sum",
]


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
    """The weighted multi-task loss of one batch (``mtjax.weighting.transforms``' docstring;
    MT-CP Eq. 7's sum): the
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


def _build_lps(options, num_tasks: int, steps_per_epoch: int, log_scale: bool = True) -> Weighting:
  # As released: raw losses, no clipping, no normalising (the options the released rule fixes).
  released = bool(options.as_released)
  ours = lambda value: None if released else value
  transform = loss_prioritization(
      num_tasks,
      spread=options.spread,
      history=options.history,
      steps_per_epoch=steps_per_epoch,
      log_scale=ours(log_scale),
      min_weight=ours(options.min_weight if options.min_weight > 0 else None),
      normalize=ours(options.normalize),
      as_released=released,
  )
  return Weighting(options.name, transform, log_scale and not released, num_tasks)


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
