"""Region-aware distribution contrast, RDC (Li et al., ECCV 2024; docs/methods.md, "Region-aware distribution contrast").

For an example with labelled tasks S and unlabelled tasks U, and each directed pair (s ∈ S, t ∈ U)
(every ordered pair s ≠ t when the example has every task labelled), the mapping network a_θ
(``mapping.FiLMEncoder``, conditioned on the pair) maps the ground truth y_s and the prediction ŷ_t
into one feature space: f_s = a_θ(enc(y_s) | s, t), f_t = a_θ(enc(ŷ_t) | s, t), [H', W', D].
Region i of each map becomes a Gaussian p_i (``mtjax.ops.gaussian.region_gaussians``). With
sim(p, q) = exp(−W(p, q) / τ) (Eq. 4; W the squared 2-Wasserstein distance, Eq. 5), region i of the
prediction of t is pulled towards region i of the ground truth of s and pushed from the other valid
regions j ≠ i of s in the same image (Eq. 3):

    L_{i,t} = −log( sim(p_{i,t}, p_{i,s}) / Σ_j sim(p_{i,t}, p_{j,s}) ),

and L_RC is the mean of L_{i,t} over every valid region of every valid pair of every example of the
batch (Eq. 6). The training objective is L_sup + λ·L_RC (Eq. 1).

Ablations (``RDCSettings``): ``contrast`` ``gaussian`` (the method) | ``vector`` (region means,
InfoNCE on cosine / τ or −‖Δμ‖² / τ) | ``pixel`` (pixel-to-pixel: sampled pixels of the prediction
map against the ground-truth map at the same pixels, negatives the sampled pixels of other regions,
cosine / τ; our reconstruction); ``distance`` ``w2`` | ``kl`` (KL(p_t ‖ p_s)); ``covariance``
``full`` | ``diag``; ``extraction`` ``region`` (the batch's ``regions`` map) | ``patch`` (a fixed grid).

Inputs of a_θ (MTPSL's, docs/methods.md; ``encode_ground_truth``, ``encode_prediction``): semseg
ground truth one-hot with ignore pixels all-zero, the semseg prediction as a straight-through hard
one-hot (of a Gumbel-softmax sample by default, as MTPSL); depth divided by the map's max |depth|;
normals (n + 1) / 2.

Everything is computed for all example × pair slots at once with static shapes: each example gets
``max_pairs`` slots (the most valid pairs any example of the label setting has: T − 1 for
onelabel, T(T − 1) for full), invalid slots, regions and examples are masked and never divide by
zero. Region maps are read at the a_θ output resolution by nearest sampling at the cell centres
(``regions[o::s, o::s]``, s the stride, o = s // 2), where ``mtjax.data.regions.relabel_by_area``
already counted their areas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtjax.ops import gaussian
from mtjax.regularizers import mapping

__all__ = [
    "CONTRASTS",
    "DISTANCES",
    "EXTRACTIONS",
    "MODES",
    "RDCSettings",
    "VECTOR_SIMILARITIES",
    "contrast_loss",
    "info_nce",
    "mapped_regions",
    "patch_ids",
    "rdc_loss",
    "region_ids_at_stride",
    "settings_from_config",
    "slot_gaussians",
]


Array = jax.Array

MODES = ("paper", "as_released")
CONTRASTS = ("gaussian", "vector", "pixel")
DISTANCES = ("w2", "kl")
EXTRACTIONS = ("region", "patch")
VECTOR_SIMILARITIES = ("cosine", "l2")


@dataclasses.dataclass(frozen=True)
class RDCSettings:
  """The static settings of the RDC loss (``config.regularizer``; defaults there, with reasons).

  Attributes:
    tasks: task names in label-mask column order.
    num_classes: the dataset's semantic classes (the semseg record's a_θ input channels).
    max_pairs: K, pair slots per example (``max_directed_pairs``).
    num_regions: R, regions per map (``config.regions.max_regions``); for ``extraction="patch"``
      the number of grid cells is used instead.
    temperature: τ > 0 of Eq. 4, in the distance's units (squared feature units for W2, nats for KL,
      cosine for the vector / pixel contrasts).
    contrast, distance, covariance, extraction, vector_similarity: the ablations (module docstring).
    patch_size: grid cell in input pixels for ``extraction="patch"``.
    pixel_samples: sampled pixels per map for ``contrast="pixel"``.
    eps: covariance shrinkage ε (``region_gaussians``).
    sqrt_method: W2's matrix square-root method (``pairwise_wasserstein2``).
    gumbel: sample the semseg prediction's one-hot from a Gumbel-softmax (MTPSL) instead of taking
      its argmax.
    filters, convs_per_stage: a_θ's stages (``mapping.FiLMEncoder``).
    conv_impl: a_θ's convolution implementation.
    mode: ``paper`` (this module: the paper's loss, with its gradient) or ``as_released`` (the
      released code's objective, ``rdc_released.released_rdc_loss``: no gradient, the bank of
      1,000 Gaussians and its two oldest entries as negatives, the per-epoch weight ramp; of the
      settings above it reads tasks, num_classes, max_pairs, gumbel and a_θ's shape).
    steps_per_epoch: the epoch length (``as_released``'s weight ramp).
  """

  tasks: tuple[str, ...]
  num_classes: int
  max_pairs: int
  num_regions: int = 32
  temperature: float = 1.0
  contrast: str = "gaussian"
  distance: str = "w2"
  covariance: str = "full"
  extraction: str = "region"
  vector_similarity: str = "cosine"
  patch_size: int = 32
  pixel_samples: int = 256
  eps: float = 1e-4
  sqrt_method: str = "auto"
  gumbel: bool = True
  filters: tuple[int, ...] = (32, 64)
  convs_per_stage: tuple[int, ...] = (1, 1)
  conv_impl: str = "auto"
  mode: str = "paper"
  steps_per_epoch: int = 1

  def __post_init__(self):
    for name, value, choices in (
        ("mode", self.mode, MODES),
        ("contrast", self.contrast, CONTRASTS),
        ("distance", self.distance, DISTANCES),
        ("covariance", self.covariance, gaussian.COVARIANCES),
        ("extraction", self.extraction, EXTRACTIONS),
        ("vector_similarity", self.vector_similarity, VECTOR_SIMILARITIES),
        ("sqrt_method", self.sqrt_method, gaussian.SQRT_METHODS),
    ):
      if value not in choices:
        raise ValueError(f"config.regularizer.{name}={value!r}: expected one of {choices}")
    if len(self.tasks) < 2:
      raise ValueError(f"RDC needs at least two tasks; got {self.tasks}")
    mapping.input_channels(self.tasks, self.num_classes)  # Unknown tasks raise here.
    for name in ("max_pairs", "num_regions", "patch_size", "pixel_samples"):
      if getattr(self, name) < 1:
        raise ValueError(f"RDC {name}={getattr(self, name)}: expected >= 1")
    if not self.temperature > 0:
      raise ValueError(f"config.regularizer.temperature={self.temperature}: expected > 0")

  @property
  def stride(self) -> int:
    return mapping.output_stride(self.filters)

  @property
  def input_channels(self) -> tuple[int, ...]:
    return mapping.input_channels(self.tasks, self.num_classes)

  def encoder(self) -> mapping.FiLMEncoder:
    return mapping.FiLMEncoder(
        input_channels=self.input_channels,
        filters=self.filters,
        convs_per_stage=self.convs_per_stage,
        conv_impl=self.conv_impl,
    )


# ---------------------------------------------------------------------------------------------------
# The contrast
# ---------------------------------------------------------------------------------------------------


def info_nce(logits: Array, key_valid: Array, anchor_valid: Array) -> tuple[Array, Array]:
  """InfoNCE with the positive on the diagonal (Eq. 3), masked.

  L_i = logsumexp_{j valid for i} logits[i, j] − logits[i, i] for each anchor i.

  Args:
    logits: float [..., N, N]: similarity / τ of anchor i (rows) and key j (columns).
    key_valid: bool [..., N, N] (or broadcastable): key j may enter row i's denominator. The
      positive (j = i) must be valid for a row to count.
    anchor_valid: bool [..., N]: row i is an anchor.

  Returns:
    (loss_sum float32 [...], count float32 [...]): the sum of L_i over the rows that count (anchor
    valid, positive valid, and at least one valid negative) and how many there are. A row that does
    not count contributes exactly 0, also to gradients.
  """
  n = logits.shape[-1]
  eye = jnp.eye(n, dtype=bool)
  key_valid = jnp.broadcast_to(key_valid, logits.shape)
  has_negative = jnp.any(key_valid & ~eye, axis=-1)
  rows = anchor_valid & jnp.diagonal(key_valid, axis1=-2, axis2=-1) & has_negative
  masked = jnp.where(key_valid & rows[..., None], logits, -jnp.inf)
  # Rows that do not count are all -inf: give them a finite dummy (0 - 0) before logsumexp.
  masked = jnp.where(rows[..., None], masked, jnp.where(eye, 0.0, -jnp.inf))
  positive = jnp.diagonal(masked, axis1=-2, axis2=-1)
  losses = jax.nn.logsumexp(masked, axis=-1) - positive
  return jnp.sum(jnp.where(rows, losses, 0.0), -1), jnp.sum(rows, -1).astype(jnp.float32)


def slot_gaussians(
    f_pred: Array, f_gt: Array, ids: Array, settings: RDCSettings
) -> tuple[Array, Array, Array, Array, Array]:
  """The region Gaussians N(μ_i, Σ_i + εI) of every slot's two maps (region i's pixels' mean and
  covariance; docs/methods.md), as the gaussian / vector contrasts compare them.

  Args:
    f_pred: float32 [N, H', W', D]: a_θ of the unlabelled tasks' predictions (``mapped_regions``).
    f_gt: float32 [N, H', W', D]: a_θ of the labelled tasks' ground truths, slot-aligned.
    ids: int32 [N, H', W'] region ids 0..R−1 (R = ``settings.num_regions``), −1 = no region.
    settings: ``RDCSettings``: R, ε, and the covariance (``"diag"`` for the vector contrast).

  Returns:
    (mu_pred [N, R, D], cov_pred, mu_gt [N, R, D], cov_gt, valid bool [N, R]): float32; the
    covariances [N, R, D, D] (``covariance="full"``) or their diagonals [N, R, D], shrunk by ε
    (``gaussian.region_gaussians``); valid: the region has a pixel.
  """
  covariance = settings.covariance if settings.contrast == "gaussian" else "diag"
  both = jnp.concatenate([f_pred, f_gt], axis=0)  # One moments call for both maps.
  with jax.named_scope("rdc_moments"):  # Profiles name the stages (tools/profile_train_step.py).
    means, covs, counts = gaussian.region_gaussians(
        both,
        jnp.concatenate([ids, ids], axis=0),
        settings.num_regions,
        covariance=covariance,
        eps=settings.eps,
    )
  n = f_pred.shape[0]
  return means[:n], covs[:n], means[n:], covs[n:], counts[:n] > 0


def _region_logits(f_pred, f_gt, ids, s: RDCSettings):
  """Logits [N, R, R] and region validity [N, R] of the gaussian / vector contrasts."""
  mu_t, cov_t, mu_s, cov_s, valid = slot_gaussians(f_pred, f_gt, ids, s)
  if s.contrast == "vector":
    if s.vector_similarity == "cosine":
      unit = lambda x: x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))
      sim = jnp.einsum("nid,njd->nij", unit(mu_t), unit(mu_s))
    else:
      sim = -jnp.sum(jnp.square(mu_t[:, :, None, :] - mu_s[:, None, :, :]), -1)
    return sim / s.temperature, valid
  with jax.named_scope(f"rdc_pairwise_{s.distance}"):
    if s.distance == "w2":
      dist = gaussian.pairwise_wasserstein2(mu_t, cov_t, mu_s, cov_s, sqrt_method=s.sqrt_method)
    else:
      dist = gaussian.pairwise_kl_divergence(mu_t, cov_t, mu_s, cov_s)
  return -dist / s.temperature, valid


def _pixel_logits(f_pred, f_gt, ids, rng, s: RDCSettings):
  """Logits [N, M, M], key validity [N, M, M] and anchor validity [N, M] of the pixel contrast:
  M pixels sampled uniformly (without replacement) from each map's pixels that have a region."""
  n, h, w, d = f_pred.shape
  m = min(s.pixel_samples, h * w)
  flat_ids = ids.reshape(n, h * w)
  # Gumbel top-k on a constant score: a uniform sample without replacement of the valid pixels.
  noise = jax.random.uniform(rng, flat_ids.shape)
  score, picked = jax.lax.top_k(jnp.where(flat_ids >= 0, noise, -1.0), m)
  anchor_valid = score >= 0
  region = jnp.take_along_axis(flat_ids, picked, -1)
  gather = lambda f: jnp.take_along_axis(f.reshape(n, h * w, d), picked[..., None], 1)
  unit = lambda x: x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))
  a, k = unit(gather(f_pred)), unit(gather(f_gt))
  logits = jnp.einsum("nid,njd->nij", a, k) / s.temperature
  eye = jnp.eye(m, dtype=bool)
  key_valid = (eye | (region[:, :, None] != region[:, None, :])) & anchor_valid[:, None, :]
  return logits, key_valid, anchor_valid


def patch_ids(height: int, width: int, patch_size: int, stride: int) -> tuple[np.ndarray, int]:
  """The patch-extraction region map at the loss resolution: (int32 [H / s, W / s] cell index of
  a ``patch_size`` grid over the H x W input, sampled at the cell centres; the number of cells)."""
  o = stride // 2
  rows = np.arange(o, height, stride)[:, None] // patch_size
  cols = np.arange(o, width, stride)[None, :] // patch_size
  ncols = -(-width // patch_size)
  ids = (rows * ncols + cols).astype(np.int32)
  _, dense = np.unique(ids, return_inverse=True)
  dense = dense.reshape(ids.shape).astype(np.int32)
  return dense, int(dense.max()) + 1


def contrast_loss(
    f_pred: Array,
    f_gt: Array,
    ids: Array,
    slot_valid: Array,
    settings: RDCSettings,
    rng: Array | None = None,
) -> tuple[Array, Array]:
  """L_RC over mapped maps (Eq. 3–6), the sum and the number of anchors that count.

  Args:
    f_pred: float [N, H', W', D]: a_θ of the predictions of the unlabelled tasks t (one per slot).
    f_gt: float [N, H', W', D]: a_θ of the ground truths of the labelled tasks s, slot-aligned.
    ids: int32 [N, H', W'] region ids 0..R−1 at this resolution, −1 = no region.
    slot_valid: bool [N]: the slot is a valid (example, pair).
    settings: ``RDCSettings`` (contrast, distance, covariance, τ, R).
    rng: key for the pixel contrast's sampling (required there).

  Returns:
    (loss_sum float32 scalar, count float32 scalar): L_RC = loss_sum / max(count, 1). Regions with
    no pixel, slots that are not valid, and images with a single valid region (no negative)
    contribute nothing.

  Raises:
    ValueError: ``contrast="pixel"`` without an rng.
  """
  f_pred, f_gt = f_pred.astype(jnp.float32), f_gt.astype(jnp.float32)
  if settings.contrast == "pixel":
    if rng is None:
      raise ValueError("the pixel contrast samples pixels: pass an rng")
    logits, key_valid, anchor_valid = _pixel_logits(f_pred, f_gt, ids, rng, settings)
  else:
    logits, valid = _region_logits(f_pred, f_gt, ids, settings)
    key_valid, anchor_valid = valid[:, None, :] & valid[:, :, None], valid
  with jax.named_scope("rdc_info_nce"):
    loss_sum, count = info_nce(logits, key_valid, anchor_valid & slot_valid[:, None])
  return jnp.sum(loss_sum), jnp.sum(count)


# ---------------------------------------------------------------------------------------------------
# The regularizer: a_θ on every slot, then the contrast
# ---------------------------------------------------------------------------------------------------


def region_ids_at_stride(regions: Array, stride: int) -> Array:
  """regions int32 [B, H, W] -> [B, H / s, W / s], nearest at the cell centres (o::s, o = s // 2)."""
  o = stride // 2
  return regions[:, o::stride, o::stride]


def mapped_regions(
    params,
    settings: RDCSettings,
    predictions: Mapping[str, Array],
    batch: Mapping[str, Array],
    rng: Array,
) -> tuple[Array, Array, Array, Array, RDCSettings]:
  """a_θ on every (example, pair) slot and the regions at its stride: what ``contrast_loss``
  compares, flattened to N = B · K slots (K = ``settings.max_pairs``).

  Args:
    as ``rdc_loss`` (``rng``: the Gumbel noise of the semseg prediction's one-hot).

  Returns:
    (f_pred, f_gt, ids, slot_valid, settings_r): f_pred, f_gt float [N, H / s, W / s, D] (s =
    ``settings.stride``) a_θ of the unlabelled task's prediction and of the labelled task's ground
    truth per slot; ids int32 [N, H / s, W / s] region ids (−1 none; ``region_ids_at_stride``, or
    the patch grid of ``patch_ids``); slot_valid bool [N]; settings_r: ``settings`` with
    ``num_regions`` the number of ids (the patch grid's cells for ``extraction="patch"``).

  Raises:
    ValueError: ``regions`` missing for region extraction, or H, W not divisible by the stride.
  """
  first = predictions[settings.tasks[0]]
  height, width = first.shape[1], first.shape[2]
  stride = settings.stride
  if height % stride or width % stride:
    raise ValueError(
        f"RDC: images {height}x{width} must be divisible by a_θ's stride {stride} "
        f"(2 ** len(config.regularizer.mapping.filters))"
    )
  if settings.extraction == "region" and "regions" not in batch:
    raise ValueError(
        "RDC with extraction='region' reads batch['regions']: set config.regions.source"
    )
  with jax.named_scope("rdc_mapping"):  # a_θ on every slot's prediction and ground truth.
    pred_task, _, slot_valid, f_pred, f_gt = mapping.mapped_slots(
        params, settings, predictions, batch, rng
    )
  batch_size, slots = pred_task.shape
  if settings.extraction == "region":
    ids = region_ids_at_stride(batch["regions"], stride)
    num_regions = settings.num_regions
  else:
    grid, num_regions = patch_ids(height, width, settings.patch_size, stride)
    ids = jnp.broadcast_to(jnp.asarray(grid), (batch_size, *grid.shape))
  ids = jnp.broadcast_to(ids[:, None], (batch_size, slots, *ids.shape[1:]))
  flat = lambda x: x.reshape(batch_size * slots, *x.shape[2:])
  settings_r = dataclasses.replace(settings, num_regions=num_regions)
  return flat(f_pred), flat(f_gt), flat(ids), flat(slot_valid), settings_r


def rdc_loss(
    params,
    settings: RDCSettings,
    predictions: Mapping[str, Array],
    batch: Mapping[str, Array],
    rng: Array,
) -> tuple[Array, dict[str, Array]]:
  """L_RC of a batch (Eq. 6): the regularizer's pure loss.

  Args:
    params: a_θ's params.
    settings: ``RDCSettings``.
    predictions: the model's outputs (task name -> [B, H, W, C], semseg as log-probabilities).
    batch: ground truths (task name -> [B, H, W, ...]), ``label_mask`` float32 [B, T] in
      ``settings.tasks`` order, ``regions`` int32 [B, H, W] (−1 none) for ``extraction="region"``,
      optional ``valid`` float32 [B] (0 = padding).
    rng: key (Gumbel noise, pixel sampling).

  Returns:
    (L_RC float32 scalar, logs): logs ``valid_pairs`` (example-pair slots that count) and
    ``valid_regions`` (anchors that count), float32 scalars over the whole batch. L_RC = 0 when
    nothing counts.

  Raises:
    ValueError: ``regions`` missing for region extraction, or H, W not divisible by the stride.
  """
  rng_map, rng_pixels = jax.random.split(rng)
  f_pred, f_gt, ids, slot_valid, settings_r = mapped_regions(
      params, settings, predictions, batch, rng_map
  )
  loss_sum, count = contrast_loss(f_pred, f_gt, ids, slot_valid, settings_r, rng_pixels)
  loss = loss_sum / jnp.maximum(count, 1.0)
  logs = {"valid_pairs": jnp.sum(slot_valid).astype(jnp.float32), "valid_regions": count}
  return loss, logs


def settings_from_config(
    config, tasks: Sequence[str], num_classes: int, max_pairs: int, steps_per_epoch: int = 1
) -> RDCSettings:
  """``RDCSettings`` from ``config.regularizer`` and ``config.regions``.

  Raises:
    ValueError: bad values (``RDCSettings``), or region extraction whose ``config.regions`` do not
      fit (no source; ``loss_stride`` not a_θ's stride; as released: not the 256 gray values of
      files kept as they are).
  """
  reg = config.regularizer
  if reg.mode == "as_released":
    regions = config.regions
    if (
        regions.source not in ("files", "instance")
        or (regions.relabel, regions.max_regions) != ("none", 256)
    ):
      raise ValueError(
          "config.regularizer.mode='as_released' reads RDC's released gray-value regions: "
          "expected config.regions.source='files' (tools/convert_released_regions.py; or "
          "'instance', ids as gray values), relabel='none', max_regions=256; got "
          f"{regions.source!r}, {regions.relabel!r}, {regions.max_regions}"
      )
    return RDCSettings(
        tasks=tuple(tasks),
        num_classes=num_classes,
        max_pairs=max_pairs,
        gumbel=reg.gumbel,
        filters=tuple(reg.mapping.filters),
        convs_per_stage=tuple(reg.mapping.convs_per_stage),
        conv_impl=config.model.conv_impl,
        mode="as_released",
        steps_per_epoch=steps_per_epoch,
    )
  settings = RDCSettings(
      tasks=tuple(tasks),
      num_classes=num_classes,
      max_pairs=max_pairs,
      num_regions=config.regions.max_regions,
      temperature=reg.temperature,
      contrast=reg.contrast,
      distance=reg.distance,
      covariance=reg.covariance,
      extraction=reg.extraction,
      vector_similarity=reg.vector_similarity,
      patch_size=reg.patch_size,
      pixel_samples=reg.pixel_samples,
      eps=reg.eps,
      sqrt_method=reg.sqrt_method,
      gumbel=reg.gumbel,
      filters=tuple(reg.mapping.filters),
      convs_per_stage=tuple(reg.mapping.convs_per_stage),
      conv_impl=config.model.conv_impl,
  )
  if settings.extraction == "region":
    if config.regions.source == "none":
      raise ValueError(
          "config.regularizer.extraction='region' needs regions: set config.regions.source "
          "(instance | patch | semantic_gt | files), or use extraction='patch'"
      )
    if config.regions.loss_stride != settings.stride:
      raise ValueError(
          f"config.regions.loss_stride={config.regions.loss_stride} must equal a_θ's output "
          f"stride {settings.stride} (2 ** len(config.regularizer.mapping.filters)): the "
          "regions are relabelled by their area at the resolution the loss sees"
      )
  return settings
