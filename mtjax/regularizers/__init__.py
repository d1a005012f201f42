"""Regularizers added to the partially supervised loss, each one small record (``Regularizer``):
its own parameters, the batch keys it reads, and a pure loss. ``config.regularizer.name`` selects
one: ``none`` | ``rdc`` (region-aware distribution contrast, ``rdc.py``) | ``xtc`` (MTPSL's
cross-task consistency, ``xtc.py``) | ``pixel_contrast`` (Yang et al.'s contrastive multi-task
regularization, ``pixel_contrast.py``). The FiLM mapping network of rdc and xtc is ``mapping.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtjax.models.features import feature_shapes as model_feature_shapes
from mtjax.models.features import stride_and_channels
from mtjax.regularizers import mapping, pixel_contrast, rdc, rdc_released, xtc

__all__ = [
    "NAMES",
    "Regularizer",
    "create",
    "mapping",
    "pixel_contrast",
    "rdc",
    "rdc_released",
    "xtc",
]


NAMES = ("none", "rdc", "xtc", "pixel_contrast")


@dataclasses.dataclass(frozen=True)
class Regularizer:
  """One regularizer, as the objective and the optimizer see it.

  Attributes:
    name: ``config.regularizer.name``; its loss is logged as ``loss/<name>``.
    weight: λ, the objective adds λ · loss.
    batch_keys: train-batch keys it reads besides the ground truths and ``label_mask``.
    init: (rng, image_shape (H, W)) -> params (a pytree of float32 arrays).
    loss: (params, predictions, batch, rng, features) -> (float32 scalar, logs {name: float32
      scalar}); pure and jit-safe, computed on the global batch. ``features`` are the model's
      (``mtjax.models.features``; {} unless ``needs_features``).
    param_groups: params -> a pytree of the same structure whose leaves name each leaf's optimizer
      group (a key of ``learning_rates``).
    learning_rates: group -> peak learning rate (the model's decay schedule scales it).
    views: 2: the regularizer sees a second augmented view of each example (the pipeline's
      ``view2/*`` keys; its predictions, ground truths and features), the supervised loss the
      first (MTPSL); 1: both see the one view.
    needs_features: whether the model's features are captured for it.
    init_state: () -> the regularizer's non-trainable state ({} for a stateless one); a
      stateful regularizer's ``loss`` takes it as ``state=`` and returns it updated as a third
      output: (loss, logs, new_state). ``stateful`` says which.
  """

  name: str
  weight: float
  batch_keys: tuple[str, ...]
  init: Callable[[jax.Array, tuple[int, int]], Any]
  loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
  param_groups: Callable[[Any], Any]
  learning_rates: Mapping[str, float]
  views: int = 1
  needs_features: bool = False
  init_state: Callable[[], Any] = dict
  stateful: bool = False


def _film_or_mapping(params):
  """'film' for the FiLM γ / β rows, 'mapping' for a_θ's other params."""

  def group(path, _):
    return "film" if path[-1].key in ("gamma", "beta") else "mapping"

  return jax.tree_util.tree_map_with_path(group, params)


def create(
    config,
    label_mask: np.ndarray,
    num_classes: int,
    image_shape: tuple[int, int],
    feature_shapes: Mapping[str, jax.ShapeDtypeStruct] | None = None,
) -> Regularizer | None:
  """The regularizer of ``config.regularizer`` (None for ``none``).

  Args:
    config: the run's config (``regularizer``, ``regions``, ``tasks``, ``learning_rate``).
    label_mask: float32 [N, T], the training set's label mask (sets RDC's static pair slots).
    num_classes: semantic classes.
    image_shape: (H, W) of the training batches.
    feature_shapes: the model's features on one training image
      (``mtjax.models.features.feature_shapes``); None: those of ``config``'s model, computed
      here (abstractly) when the regularizer reads features.

  Raises:
    ValueError: unknown name or bad settings (each names the config key and what was expected).
  """
  reg = config.regularizer
  if reg.name not in NAMES:
    raise ValueError(f"config.regularizer.name={reg.name!r}: expected one of {NAMES}")
  if reg.name == "none":
    return None
  if not reg.weight >= 0:
    raise ValueError(f"config.regularizer.weight={reg.weight}: expected >= 0")
  if reg.views not in (1, 2):
    raise ValueError(f"config.regularizer.views={reg.views}: expected 1 or 2")
  if reg.name in ("pixel_contrast", "xtc") and feature_shapes is None:
    from mtjax.models import registry  # pylint: disable=g-import-not-at-top

    feature_shapes = model_feature_shapes(registry.create_model(config), image_shape)
  if reg.name == "pixel_contrast":
    return _pixel_contrast(config, feature_shapes)
  max_pairs = mapping.max_directed_pairs(label_mask)
  if reg.name == "xtc":
    settings = xtc.settings_from_config(
        config,
        config.tasks,
        num_classes,
        max_pairs,
        stride_and_channels(feature_shapes["bottleneck"], image_shape),
    )
    return _with_mapping(
        config,
        settings,
        image_shape,
        loss=lambda params, predictions, batch, rng, features: xtc.xtc_loss(
            params, settings, predictions, batch, rng, features
        ),
        views=2,
        needs_features=True,
    )
  steps_per_epoch = max(1, label_mask.shape[0] // config.batch_size)  # schedule.steps_per_epoch
  settings = rdc.settings_from_config(
      config, config.tasks, num_classes, max_pairs, steps_per_epoch
  )
  if settings.mode == "as_released":
    dim = settings.filters[-1]
    return _with_mapping(
        config,
        settings,
        image_shape,
        loss=lambda params, predictions, batch, rng, features, state: (
            rdc_released.released_rdc_loss(
                params,
                settings,
                predictions,
                batch,
                rng,
                state,
                steps_per_epoch=settings.steps_per_epoch,
            )
        ),
        batch_keys=("regions",),
        views=config.regularizer.views,
        init_state=lambda: rdc_released.init_state(dim),
        stateful=True,
    )
  ramp = int(config.regularizer.get("weight_ramp_epochs", 0))
  if ramp < 0:
    raise ValueError(f"config.regularizer.weight_ramp_epochs={ramp}: expected >= 0")
  paper_loss = lambda params, predictions, batch, rng: rdc.rdc_loss(
      params, settings, predictions, batch, rng
  )
  if ramp == 0:
    return _with_mapping(
        config,
        settings,
        image_shape,
        loss=lambda params, predictions, batch, rng, features: paper_loss(
            params, predictions, batch, rng
        ),
        batch_keys=("regions",) if settings.extraction == "region" else (),
        views=config.regularizer.views,
    )

  def ramped(params, predictions, batch, rng, features, state):
    """L_RC times min(epoch / ramp, 1), per epoch (the release's ramp shape, MC 227-229)."""
    loss, logs = paper_loss(params, predictions, batch, rng)
    epoch = (state["step"] // steps_per_epoch).astype(jnp.float32)
    factor = jnp.minimum(epoch / ramp, 1.0)
    return factor * loss, {**logs, "ramp": factor}, {"step": state["step"] + 1}

  return _with_mapping(
      config,
      settings,
      image_shape,
      loss=ramped,
      batch_keys=("regions",) if settings.extraction == "region" else (),
      views=config.regularizer.views,
      init_state=lambda: {"step": jnp.zeros((), jnp.int32)},
      stateful=True,
  )


def _with_mapping(config, settings, image_shape: tuple[int, int], loss, **kwargs) -> Regularizer:
  """The record of a regularizer whose params are the FiLM mapping network of ``settings``
  (``rdc.RDCSettings`` / ``xtc.XTCSettings``): a_θ's params at ``config.regularizer.learning_rate``
  (−1: the model's), the FiLM γ / β rows at ``film_learning_rate``; ``kwargs``: further fields.

  Raises:
    ValueError: training images not divisible by the mapping network's stride.
  """
  reg = config.regularizer
  if image_shape[0] % settings.stride or image_shape[1] % settings.stride:
    raise ValueError(
        f"training images {image_shape[0]}x{image_shape[1]} are not divisible by the mapping "
        f"network's stride {settings.stride} "
        f"(config.regularizer.mapping.filters={tuple(reg.mapping.filters)})"
    )
  encoder = settings.encoder()
  mapping_lr = config.learning_rate if reg.learning_rate < 0 else reg.learning_rate
  return Regularizer(
      name=reg.name,
      weight=float(reg.weight),
      init=lambda rng, shape: encoder.init_variables(rng, shape)["params"],
      loss=loss,
      param_groups=_film_or_mapping,
      learning_rates={"mapping": float(mapping_lr), "film": float(reg.film_learning_rate)},
      **{"batch_keys": (), **kwargs},
  )


def _pixel_contrast(config, feature_shapes: Mapping[str, jax.ShapeDtypeStruct]) -> Regularizer:
  settings = pixel_contrast.settings_from_config(config, config.tasks)
  widths = {feature_shapes[f"head_{t}"].shape[-1] for t in config.tasks}
  if len(widths) != 1:
    raise ValueError(f"pixel_contrast needs head features of one width; the model's are {widths}")
  channels = widths.pop()
  lr = (
      config.learning_rate
      if config.regularizer.learning_rate < 0
      else config.regularizer.learning_rate
  )
  return Regularizer(
      name="pixel_contrast",
      weight=float(config.regularizer.weight),
      batch_keys=(),
      init=lambda rng, shape: pixel_contrast.init_params(settings, rng, channels),
      loss=lambda params, predictions, batch, rng, features: pixel_contrast.pixel_contrast_loss(
          params, settings, batch, features, rng
      ),
      param_groups=lambda params: jax.tree.map(lambda _: "projectors", params),
      learning_rates={"projectors": float(lr)},
      needs_features=True,
  )
