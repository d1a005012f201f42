"""Contrastive multi-task regularization (Yang, Ye, Xu, AAAI 2023; seed 000), as
docs/methods.md, "The baselines" reconstructs it (no code was released; every knob's default is ours).

For each target task t and each example, a source task s ≠ t is drawn at random among the tasks
**labelled for that example** (none: the example adds nothing for t). The target's decoder feature
F_t (SegNet-MTL: the hidden layer of t's head, ``head_<t>``; ``mtjax.models.features``) is
sampled at N anchor and M candidate pixels, drawn uniformly from the pixels where the source's
ground truth is valid; a projector of the pair (t, s) (1x1 conv, ReLU, 1x1 conv; one per directed
pair) maps them to unit vectors z. The source's ground truth defines which candidates are
positives and negatives of an anchor, by the source task's record (``Task.relation``, its
threshold ``Task.relation_threshold`` unless ``thresholds`` overrides it):

* ``semseg``, ``human_parts``: the same class / another class;
* ``depth``: |Δd| ≤ the threshold (0.2 m) / above it;
* ``normal``: the angle between the normals ≤ the threshold (20°) / above it;
* ``edge``, ``saliency``: the same binary label / the other.

Pixels are drawn at the labels' resolution; a feature map of a coarser stride (HRNet's heads, stride
4) is read at the cell that contains each pixel.

Each anchor a takes one random positive p and one random negative n among the candidates, and

    L = mean over anchors with both of max(0, ‖z_a − z_p‖ − ‖z_a − z_n‖ + margin),

added with weight λ. Training only: evaluation never runs the projectors. Computed for every
target at once with static shapes (N + M gathers per example and target), masked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax import tasks as tasks_lib
from mtjax.regularizers import mapping

__all__ = [
    "PairProjectors",
    "PixelContrastSettings",
    "init_params",
    "pixel_contrast_loss",
    "settings_from_config",
]


Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PixelContrastSettings:
  """Static settings (``config.regularizer.pixel_contrast``; defaults ours).

  Attributes:
    tasks: task names (or records), label_mask column order.
    anchors: N anchor pixels per example and target (256).
    candidates: M candidate pixels per example and target, where positives and negatives are
      drawn (256).
    margin: the triplet margin on unit vectors (0.5; distances lie in [0, 2]).
    thresholds: (task name, threshold) pairs overriding the records' ``relation_threshold``
      (``config.regularizer.pixel_contrast.thresholds``), in the task's units.
    projection_dim: the projector's output D (64). hidden_dim: its hidden width (64).

  Raises:
    ValueError: fewer than two tasks, an unknown task, or a non-positive setting.
  """

  tasks: tuple[str | tasks_lib.Task, ...]
  anchors: int = 256
  candidates: int = 256
  margin: float = 0.5
  thresholds: tuple[tuple[str, float], ...] = ()
  projection_dim: int = 64
  hidden_dim: int = 64

  def __post_init__(self):
    if len(self.tasks) < 2:
      raise ValueError(f"pixel_contrast needs at least two tasks, got {self.tasks}")
    names = [t.name for t in self.records]  # Unknown tasks raise here.
    for name, value in self.thresholds:
      if name not in names or not value > 0:
        raise ValueError(
            f"config.regularizer.pixel_contrast.thresholds.{name}={value}: expected a task of "
            f"{tuple(names)} and a value > 0"
        )
    for name in ("anchors", "candidates", "margin"):
      if not getattr(self, name) > 0:
        raise ValueError(f"config.regularizer.pixel_contrast.{name} must be > 0")
    if self.projection_dim < 1 or self.hidden_dim < 1:
      raise ValueError("pixel_contrast projection_dim and hidden_dim must be >= 1")

  @property
  def records(self) -> tuple[tasks_lib.Task, ...]:
    return tasks_lib.resolve(self.tasks)

  def threshold(self, task: tasks_lib.Task) -> float | None:
    """The relation threshold of ``task``: the override, else the record's."""
    return dict(self.thresholds).get(task.name, task.relation_threshold)


class PairProjectors(nn.Module):
  """One 2-layer projector per directed pair (rows ``mapping.pair_row``), stacked.

  Call: x float [B, K, C], rows int32 [B] → float32 [B, K, dim], each example through its row's
  projector: relu(x W1[r] + b1[r]) W2[r] + b2[r].
  """

  num_pairs: int
  hidden: int
  dim: int

  @nn.compact
  def __call__(self, x: Array, rows: Array) -> Array:
    init = nn.initializers.lecun_normal(batch_axis=(0,))
    w1 = self.param("w1", init, (self.num_pairs, x.shape[-1], self.hidden))
    b1 = self.param("b1", nn.initializers.zeros_init(), (self.num_pairs, self.hidden))
    w2 = self.param("w2", init, (self.num_pairs, self.hidden, self.dim))
    b2 = self.param("b2", nn.initializers.zeros_init(), (self.num_pairs, self.dim))
    h = nn.relu(jnp.einsum("bkc,bch->bkh", x.astype(jnp.float32), w1[rows]) + b1[rows][:, None])
    return jnp.einsum("bkh,bhd->bkd", h, w2[rows]) + b2[rows][:, None]


def init_params(settings: PixelContrastSettings, rng: Array, feature_channels: int) -> dict:
  """Params of every target's projectors: {"target_<t>": PairProjectors params}."""
  module = PairProjectors(
      mapping.num_pairs(len(settings.tasks)), settings.hidden_dim, settings.projection_dim
  )
  x = jnp.zeros((1, 1, feature_channels), jnp.float32)
  return {
      f"target_{t}": module.init(jax.random.fold_in(rng, k), x, jnp.zeros((1,), jnp.int32))[
          "params"
      ]
      for k, t in enumerate(settings.tasks)
  }


def _pick(rng: Array, mask: Array) -> tuple[Array, Array]:
  """A uniformly random True column of each row of ``mask`` [B, N, M] → (index [B, N], any)."""
  scores = jnp.where(mask, jax.random.uniform(rng, mask.shape), -1.0)
  return jnp.argmax(scores, axis=-1), jnp.any(mask, axis=-1)


def pixel_contrast_loss(
    params,
    settings: PixelContrastSettings,
    batch: Mapping[str, Array],
    features: Mapping[str, Array],
    rng: Array,
) -> tuple[Array, dict[str, Array]]:
  """The regularizer's loss of a batch (module docstring).

  Args:
    params: ``init_params``'s.
    settings: ``PixelContrastSettings``.
    batch: ground truths (task -> [B, H, W, ...]), ``label_mask`` float32 [B, T] in
      ``settings.tasks`` order, optional ``valid`` float32 [B].
    features: the model's features; reads ``head_<t>`` float [B, H / s, W / s, C] for each task
      t (s ≥ 1 an integer stride).
    rng: key of the source draws and the pixel samples.

  Returns:
    (loss float32 scalar, logs): ``valid_anchors`` (anchors with a positive and a negative, over
    every target) and ``active`` (the fraction of them whose triplet term is > 0).

  Raises:
    ValueError: a missing ``head_<t>`` feature, or one whose size is not the labels'.
  """
  records = settings.records
  tasks = [t.name for t in records]
  num_tasks = len(tasks)
  mask = batch["label_mask"] > 0
  if "valid" in batch:
    mask = mask & (batch["valid"][:, None] > 0)
  valid_maps = jnp.stack([t.is_valid(batch[t.name]) for t in records])  # [T, B, H, W]
  _, batch_size, height, width = valid_maps.shape
  # Small images: as many pixels as there are, anchors first.
  n = min(settings.anchors, height * width // 2)
  m = min(settings.candidates, height * width - n)
  total, count, active = 0.0, 0.0, 0.0
  for k, target in enumerate(tasks):
    name = f"head_{target}"
    if name not in features:
      raise ValueError(f"pixel_contrast needs the model's {name!r} feature; got {sorted(features)}")
    feat = features[name]
    fh, fw = feat.shape[1], feat.shape[2]
    if height % fh or width % fw or height // fh != width // fw:
      raise ValueError(
          f"pixel_contrast: {name} is {fh}x{fw}, not the labels' {height}x{width} divided by an "
          "integer stride"
      )
    stride = height // fh
    key = jax.random.fold_in(rng, k)
    k_source, k_pixels, k_pos, k_neg = jax.random.split(key, 4)
    # The source: a random labelled task other than the target.
    eligible = mask & (jnp.arange(num_tasks) != k)[None, :]
    source = jnp.argmax(
        jnp.where(eligible, jax.random.uniform(k_source, eligible.shape), -1.0), axis=-1
    )
    has_source = jnp.any(eligible, axis=-1)
    # Pixels: N + M draws without replacement where the source's ground truth is valid (Gumbel
    # top-k on the validity).
    b = jnp.arange(batch_size)
    valid = valid_maps[source, b].reshape(batch_size, -1)
    gumbel = jax.random.gumbel(k_pixels, valid.shape)
    _, idx = jax.lax.top_k(jnp.where(valid, gumbel, -jnp.inf), n + m)
    picked = jnp.take_along_axis(valid, idx, axis=1)  # False where the image had too few.
    # The feature cell of each sampled pixel (nearest: the cell that contains it).
    cell = (idx // width // stride) * fw + (idx % width) // stride
    z = jnp.take_along_axis(feat.reshape(batch_size, -1, feat.shape[-1]), cell[..., None], axis=1)
    rows = mapping.pair_row(jnp.full_like(source, k), source, num_tasks)
    z = PairProjectors(
        mapping.num_pairs(num_tasks), settings.hidden_dim, settings.projection_dim
    ).apply({"params": params[f"target_{target}"]}, z, rows)
    z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, -1, keepdims=True), 1e-12))
    za, zc = z[:, :n], z[:, n:]
    # Relations under each example's source: each task's rule on its gathered values, selected.
    close = jnp.zeros((batch_size, n, m), bool)
    for j, src in enumerate(records):
      gt = batch[src.name].reshape(batch_size, height * width, *src.gt_shape)
      values = jnp.take_along_axis(gt, idx.reshape(idx.shape + (1,) * len(src.gt_shape)), axis=1)
      rel = src.relation(values[:, :n], values[:, n:], settings.threshold(src))
      close = jnp.where((source == j)[:, None, None], rel, close)
    usable = picked[:, None, n:]
    pos, neg = close & usable, ~close & usable
    ip, has_pos = _pick(k_pos, pos)
    ineg, has_neg = _pick(k_neg, neg)
    zp = jnp.take_along_axis(zc, ip[..., None], axis=1)
    zn = jnp.take_along_axis(zc, ineg[..., None], axis=1)
    d_ap = jnp.sqrt(jnp.sum(jnp.square(za - zp), -1) + 1e-12)
    d_an = jnp.sqrt(jnp.sum(jnp.square(za - zn), -1) + 1e-12)
    term = jax.nn.relu(d_ap - d_an + settings.margin)
    anchor_ok = (has_pos & has_neg & picked[:, :n] & has_source[:, None]).astype(jnp.float32)
    total = total + jnp.sum(term * anchor_ok)
    count = count + jnp.sum(anchor_ok)
    active = active + jnp.sum((term > 0) * anchor_ok)
  loss = total / jnp.maximum(count, 1.0)
  return loss, {"valid_anchors": count, "active": active / jnp.maximum(count, 1.0)}


def settings_from_config(config, tasks: Sequence[str]) -> PixelContrastSettings:
  """``PixelContrastSettings`` from ``config.regularizer.pixel_contrast``.

  Raises:
    ValueError: bad values.
  """
  pc = config.regularizer.pixel_contrast
  return PixelContrastSettings(
      tasks=tuple(tasks),
      anchors=pc.anchors,
      candidates=pc.candidates,
      margin=pc.margin,
      thresholds=tuple((k, float(v)) for k, v in pc.thresholds.items() if k in tuple(tasks)),
      projection_dim=pc.projection_dim,
      hidden_dim=pc.hidden_dim,
  )
