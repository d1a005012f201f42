"""MTPSL's cross-task consistency, "xtc" (Li, Liu, Bilen, CVPR 2022; docs/methods.md, "The baselines"):
the baseline the region-aware distribution contrast paper compares against.

For each example and each directed pair (s labelled, t unlabelled; every ordered pair s ≠ t for an
example with every task labelled, as ``mapping.pair_validity``), the mapping network
(``mapping.FiLMEncoder``, conditioned on the pair; MTPSL's shape: filters (64, 128, 256, 512,
512), 2-2-3-3-3 convs, stride 32) maps the ground truth y_s and the prediction ŷ_t of the *second*
augmented view; with F the backbone's bottleneck feature of that view (stop-gradient):

    L_{s,t} = (1 − cos(M_s, M_t)) + ρ [(1 − cos(M_s, sg(F))) + (1 − cos(M_t, sg(F)))]

cosines along channels, averaged over positions, ρ = 0.5 (``feature_weight``). An example's loss
is the sum over its pairs; the regularizer's loss is the mean over the batch (every example
counts in the mean, MTPSL's Σ_b / B). The supervised loss uses the first view (``objective``).
Inputs are MTPSL's encodings (``mapping.encode_ground_truth`` / ``encode_prediction``: the semseg
prediction as a straight-through hard Gumbel one-hot). Weight λ = 2.0 on NYUv2 (``weight``); the
FiLM rows have their own Adam rate (1e-3 on NYUv2).

Difference from MTPSL: in a partial label setting an example that happens to have every task
labelled gets every ordered pair here (MTPSL gives it none); with onelabel no example has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from mtjax.regularizers import mapping

__all__ = [
    "XTCSettings",
    "cosine_distance",
    "settings_from_config",
    "xtc_loss",
]


Array = jax.Array


@dataclasses.dataclass(frozen=True)
class XTCSettings:
  """Static settings of the xtc loss.

  Attributes:
    tasks: task names, label_mask column order. num_classes: semantic classes.
    max_pairs: K, pair slots per example (``mapping.max_directed_pairs`` of the label setting).
    filters, convs_per_stage: the mapping network's stages; ``filters[-1]`` must equal the
      bottleneck's channels and ``len(filters)`` its number of pools (``create`` checks).
    feature_weight: ρ, the weight of the two terms against the bottleneck feature (MTPSL 0.5).
    gumbel: the semseg prediction as a Gumbel (True, MTPSL) or argmax straight-through one-hot.
    conv_impl: ``layers.conv3x3``'s implementation (speed only).

  Raises:
    ValueError: fewer than two tasks, K < 1, ρ < 0.
  """

  tasks: tuple[str, ...]
  num_classes: int
  max_pairs: int
  filters: tuple[int, ...] = (64, 128, 256, 512, 512)
  convs_per_stage: tuple[int, ...] = (2, 2, 3, 3, 3)
  feature_weight: float = 0.5
  gumbel: bool = True
  conv_impl: str = "auto"

  def __post_init__(self):
    if len(self.tasks) < 2:
      raise ValueError(f"xtc needs at least two tasks, got {self.tasks}")
    if self.max_pairs < 1:
      raise ValueError(f"xtc max_pairs must be >= 1, got {self.max_pairs}")
    if self.feature_weight < 0:
      raise ValueError(f"config.regularizer.feature_weight must be >= 0, got {self.feature_weight}")

  @property
  def stride(self) -> int:
    return mapping.output_stride(self.filters)

  def encoder(self) -> mapping.FiLMEncoder:
    channels = mapping.input_channels(self.tasks, self.num_classes)
    return mapping.FiLMEncoder(channels, self.filters, self.convs_per_stage, self.conv_impl)


def cosine_distance(a: Array, b: Array, eps: float = 1e-12) -> Array:
  """1 − cos(a, b) along the last axis, averaged over the positions of each map.

  Args:
    a, b: float [N, H, W, C] (broadcastable). eps: floor of each norm (a zero vector has
      cosine 0 with anything, as PyTorch's ``F.cosine_similarity``).

  Returns:
    float32 [N].
  """
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  dot = jnp.sum(a * b, axis=-1)
  norms = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps) * jnp.maximum(
      jnp.linalg.norm(b, axis=-1), eps
  )
  return 1.0 - jnp.mean(dot / norms, axis=(1, 2))


def xtc_loss(
    params,
    settings: XTCSettings,
    predictions: Mapping[str, Array],
    batch: Mapping[str, Array],
    rng: Array,
    features: Mapping[str, Array],
) -> tuple[Array, dict[str, Array]]:
  """The cross-task consistency loss of a batch (module docstring; MTPSL ``Mapfns.forward``).

  Args:
    params: the mapping network's params.
    settings: ``XTCSettings``.
    predictions: the model's outputs on the second view (task -> [B, H, W, C]).
    batch: the second view's ground truths (task -> [B, H, W, ...]), ``label_mask`` float32
      [B, T], optional ``valid`` float32 [B].
    rng: key of the Gumbel noise.
    features: the model's features of the second view; reads ``"bottleneck"``
      [B, H / stride, W / stride, filters[-1]].

  Returns:
    (loss float32 scalar, logs): ``valid_pairs`` (pair slots that count), ``consistency`` (the
    mean 1 − cos(M_s, M_t) over them; 0 when none).

  Raises:
    ValueError: no bottleneck feature, or one whose shape is not the mapping's output.
  """
  if "bottleneck" not in features:
    raise ValueError(f"xtc needs the model's 'bottleneck' feature; got {sorted(features)}")
  pred_task, gt_task, slot_valid, f_pred, f_gt = mapping.mapped_slots(
      params, settings, predictions, batch, rng
  )
  feat = jax.lax.stop_gradient(features["bottleneck"])
  if feat.shape[1:] != f_pred.shape[2:]:
    raise ValueError(
        f"xtc: the bottleneck feature is {feat.shape[1:]} but the mapping network gives "
        f"{f_pred.shape[2:]}; config.regularizer.mapping.filters must have the model's number of "
        "stages and its last width"
    )
  batch_size, slots = pred_task.shape
  flat = lambda x: x.reshape(batch_size * slots, *x.shape[2:])
  feat = jnp.repeat(feat, slots, axis=0)
  consistency = cosine_distance(flat(f_gt), flat(f_pred))
  to_feature = cosine_distance(flat(f_gt), feat) + cosine_distance(flat(f_pred), feat)
  per_slot = (consistency + settings.feature_weight * to_feature).reshape(batch_size, slots)
  valid = slot_valid.astype(jnp.float32)
  loss = jnp.sum(per_slot * valid) / batch_size
  count = jnp.sum(valid)
  logs = {
      "valid_pairs": count,
      "consistency": jnp.sum(consistency.reshape(batch_size, slots) * valid)
      / jnp.maximum(count, 1.0),
  }
  return loss, logs


def settings_from_config(
    config,
    tasks: Sequence[str],
    num_classes: int,
    max_pairs: int,
    bottleneck: tuple[int, int],
) -> XTCSettings:
  """``XTCSettings`` from ``config.regularizer`` (``mapping.*``, ``feature_weight``, ``gumbel``).

  Args:
    config, tasks, num_classes, max_pairs: as ``XTCSettings``'s.
    bottleneck: (stride, channels) of the model's ``bottleneck`` feature
      (``mtjax.models.features.stride_and_channels``).

  Raises:
    ValueError: bad values, or a mapping network whose output cannot meet the model's bottleneck
      (another stride or another last width).
  """
  reg = config.regularizer
  settings = XTCSettings(
      tasks=tuple(tasks),
      num_classes=num_classes,
      max_pairs=max_pairs,
      filters=tuple(reg.mapping.filters),
      convs_per_stage=tuple(reg.mapping.convs_per_stage),
      feature_weight=reg.feature_weight,
      gumbel=reg.gumbel,
      conv_impl=config.model.conv_impl,
  )
  stride, channels = bottleneck
  if settings.stride != stride or settings.filters[-1] != channels:
    raise ValueError(
        f"xtc compares the mapping network's output with the model's bottleneck: "
        f"config.regularizer.mapping.filters={settings.filters} needs {stride.bit_length() - 1} "
        f"stages ending at {channels} channels (the {config.model.name} bottleneck: stride "
        f"{stride}, {channels} channels)"
    )
  return settings
