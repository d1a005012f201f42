"""RDC's region contrast as its code was released (HereNowL/Region-aware-Distribution-Contrast,
commit a6fa360), written in JAX: the loss it computes and logs, beside the paper's (``rdc.py``).

What the released ``model/region_cons.py`` computes, per training image and directed task pair
(prediction of an unlabelled task s, ground truth of a labelled task t), on a_θ's two maps
bilinearly upsampled to 144x192 (``RegionConsistency.forward``, lines 296-307):

* regions: every 8-bit gray value v = 0..255 of the nearest-resized SAM map with at least 10
  pixels, in increasing v (``get_region_numpy``, lines 144-175); per region the mean and the
  **unbiased** covariance (``np.mean``, ``np.cov``) of the prediction map's features (the anchor
  x_i) and of the ground truth map's (y_i), on detached NumPy arrays: **no gradient** reaches
  the model or a_θ;
* a FIFO bank of the last 1,000 Gaussians shared by every image, pair and task: the image-pair's
  prediction Gaussians, then its ground-truth ones, are appended *before* the loss (lines 90-94);
* the loss (``comp_constra_loss_gaussian``, lines 201-218): pos = −W(x_i, y_i) / 5.4 enters as
  exp(pos − max(pos)) = 1, so the positive drops out; the negatives are ``neg_vs`` = [bank means,
  bank covariances], a list of two, so ``negNum = 2`` and only bank entries 0 and 1 (the two
  oldest) are used: ℓ_i = −log(1 / (½ Σ_{k∈{0,1}} exp(−W(x_i, bank_k) / 5.4) + 1e-6) + 1e-6);
  the image-pair's loss is the mean of ℓ_i over its regions (lines 99-107);
* W is ``calculate_frechet_distance`` (lines 235-284): ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 Σ_i |M_ii|
  with M = sqrtm((Σ₁ + 1e-6 I)(Σ₂ + 1e-6 I)) (``scipy.linalg.sqrtm``, then an elementwise ``abs``);
* the training script (``nyu_mtl_region_cons_gaussian.py``, lines 266-276, and ``model/map_cons.py``
  lines 178-180, 227-229) adds Σ_pairs w_e · loss / B per image with w_e = 2.0 · min(e / 20 · 0.075,
  0.075) for epoch e (0 in epoch 0): a constant, as far as the optimiser can tell.

Here the bank is an explicit state (``init_bank``, ``contrast``) threaded through the steps. M is
computed as A^{1/2} (A^{1/2} B A^{1/2})^{1/2} A^{-1/2} (A, B the shifted covariances): the principal
square root of AB, which is what ``sqrtm`` returns for a product of two positive definite matrices.
An image-pair with no region of 10 pixels makes the released code divide by zero; here it
contributes nothing and is not counted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtjax.ops.region_moments import region_gaussians

__all__ = [
    "BANK_SIZE",
    "CON_WEIGHT",
    "LOSS_EPS",
    "MIN_PIXELS",
    "NUM_VALUES",
    "REGION_CHUNK",
    "SQRTM_OFFSET",
    "TEMPERATURE",
    "contrast",
    "frechet_distance",
    "init_bank",
    "init_state",
    "region_statistics",
    "released_rdc_loss",
    "released_weight",
]


Array = jax.Array

BANK_SIZE = 1000  # ``Region_Contra_Loss.bankR_cnt``.
TEMPERATURE = 5.4  # The divisor of W (``comp_constra_loss_gaussian``).
MIN_PIXELS = 10  # A gray value with fewer pixels is no region (``get_region_numpy``).
NUM_VALUES = 256  # Gray values 0..255, 0 included.
SQRTM_OFFSET = 1e-6  # ``calculate_frechet_distance``'s eps, added to both covariances.
LOSS_EPS = 1e-6  # ``Region_Contra_Loss.eps``.
CON_WEIGHT = 2.0  # ``--con-weight`` default.
WEIGHT_EPOCHS, WEIGHT_MAX = 20, 0.075  # ``MapCons.update_weight(epoch, 20, 0.075)``.
# ``contrast`` computes the loss terms of a slot's regions this many at a time, as many chunks as
# the slot has regions (a divisor of NUM_VALUES; not the released code's: its loop is per region).
REGION_CHUNK = 32


def released_weight(epoch: Array | int) -> Array:
  """λ of the released objective at ``epoch`` (0-based): 2.0 · min(epoch / 20 · 0.075, 0.075)."""
  epoch = jnp.asarray(epoch, jnp.float32)
  return CON_WEIGHT * jnp.minimum(epoch / WEIGHT_EPOCHS * WEIGHT_MAX, WEIGHT_MAX)


def region_statistics(features: Array, gray: Array) -> tuple[Array, Array, Array]:
  """Per gray value, the mean and unbiased covariance of the features, and whether it is a region.

  Args:
    features: float [N, H, W, D], a_θ's maps at the region resolution (144x192 in the release).
    gray: integer [N, H, W], the SAM map's 8-bit gray values 0..255.

  Returns:
    (means float32 [N, 256, D], covs float32 [N, 256, D, D] (Σ (f − μ)(f − μ)ᵀ / (n − 1), as
    ``np.cov``), valid bool [N, 256]: at least ``MIN_PIXELS`` pixels).
  """
  means, covs, counts = region_gaussians(
      features.astype(jnp.float32), gray.astype(jnp.int32), NUM_VALUES, covariance="full", eps=0.0
  )
  n = counts.astype(jnp.float32)[..., None, None]
  covs = covs * n / jnp.maximum(n - 1.0, 1.0)
  return means, covs, counts >= MIN_PIXELS


def _sym_sqrt(a: Array) -> tuple[Array, Array]:
  """(a^{1/2}, a^{-1/2}) of symmetric positive definite matrices [..., D, D] by eigh."""
  w, v = jnp.linalg.eigh(a)
  w = jnp.maximum(w, 0.0)
  root = jnp.sqrt(w)
  inv = jnp.where(root > 0, 1.0 / jnp.where(root > 0, root, 1.0), 0.0)
  scale = lambda s: jnp.einsum("...ij,...j,...kj->...ik", v, s, v)
  return scale(root), scale(inv)


def frechet_distance(mu1: Array, cov1: Array, mu2: Array, cov2: Array) -> Array:
  """The released W: ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 Σ_i |sqrtm((Σ₁ + εI)(Σ₂ + εI))_ii|, ε = 1e-6
  (``calculate_frechet_distance``, ``model/region_cons.py`` lines 267-279), broadcasting.

  Args:
    mu1, mu2: float [..., D]; cov1, cov2: float [..., D, D] symmetric positive semi-definite.

  Returns:
    float32 [...]. Not a distance in general: the ``abs`` of the diagonal of a non-symmetric
    square root can exceed its trace, so W can be negative.
  """
  d = mu1.shape[-1]
  eye = jnp.eye(d, dtype=jnp.float32)
  a = cov1.astype(jnp.float32) + SQRTM_OFFSET * eye
  b = cov2.astype(jnp.float32) + SQRTM_OFFSET * eye
  a_half, a_inv_half = _sym_sqrt(a)
  c = jnp.einsum("...ij,...jk,...kl->...il", a_half, b, a_half)
  c_half, _ = _sym_sqrt(0.5 * (c + jnp.swapaxes(c, -1, -2)))
  m = jnp.einsum("...ij,...jk,...kl->...il", a_half, c_half, a_inv_half)
  diff = mu1 - mu2
  trace = lambda x: jnp.trace(x, axis1=-2, axis2=-1)
  return (
      jnp.sum(diff * diff, -1)
      + trace(cov1)
      + trace(cov2)
      - 2.0 * jnp.sum(jnp.abs(jnp.diagonal(m, axis1=-2, axis2=-1)), -1)
  )


def init_bank(dim: int) -> dict[str, Array]:
  """An empty bank of ``BANK_SIZE`` Gaussians of dimension ``dim``: {"means" float32 [1000, D],
  "covs" float32 [1000, D, D], "count" int32 (Gaussians appended so far, ever)}."""
  return {
      "means": jnp.zeros((BANK_SIZE, dim), jnp.float32),
      "covs": jnp.zeros((BANK_SIZE, dim, dim), jnp.float32),
      "count": jnp.zeros((), jnp.int32),
  }


def contrast(
    bank: dict[str, Array],
    mu_x: Array,
    cov_x: Array,
    mu_y: Array,
    cov_y: Array,
    valid: Array,
    slot_valid: Array,
) -> tuple[dict[str, Array], Array, Array]:
  """The released loss of image-pair slots in order, each appending to the bank first.

  Args:
    bank: ``init_bank``'s state (a ring buffer: the Gaussian appended n-th overall lies at
      n mod 1000; the released list's entry k is the one appended at max(0, count − 1000) + k).
    mu_x, cov_x: the prediction map's region Gaussians, float [S, 256, D], [S, 256, D, D];
      mu_y, cov_y: the ground truth map's, same shapes (``region_statistics``).
    valid: bool [S, 256], the slot's regions; slot_valid: bool [S], the slot is an image-pair
      of the batch (others neither append nor count).

  Returns:
    (new bank, loss float32 [S] (the mean of ℓ_i over the slot's regions; 0 where it does not
    count), counted bool [S]: the slot is valid and has a region).

  Cost: the W of a slot's r regions against the two negatives, ``REGION_CHUNK`` regions at a
  time (ceil(r / REGION_CHUNK) chunks, a loop with that trip count), not of all 256 gray values.
  """
  valid = valid & slot_valid[:, None]

  def one(bank, slot):
    mx, cx, my, cy, v = slot
    r = jnp.sum(v).astype(jnp.int32)
    pos = jnp.cumsum(v) - 1  # Rank of each region among the slot's, in gray-value order.
    n = bank["count"]
    drop = BANK_SIZE  # Out of range: dropped by the scatter.
    idx_x = jnp.where(v, (n + pos) % BANK_SIZE, drop)
    idx_y = jnp.where(v, (n + r + pos) % BANK_SIZE, drop)
    means = bank["means"].at[idx_x].set(mx, mode="drop").at[idx_y].set(my, mode="drop")
    covs = bank["covs"].at[idx_x].set(cx, mode="drop").at[idx_y].set(cy, mode="drop")
    count = n + 2 * r
    oldest = jnp.maximum(count - BANK_SIZE, 0)
    neg = jnp.stack([oldest % BANK_SIZE, (oldest + 1) % BANK_SIZE])
    neg_means, neg_covs = means[neg], covs[neg]
    # ℓ_i of the slot's r regions only, REGION_CHUNK at a time (most of the 256 gray values are
    # no region; their W would cost 3 eigendecompositions each): the regions first, in
    # gray-value order, then ceil(r / REGION_CHUNK) chunks.
    order = jnp.argsort(~v, stable=True)

    def chunk(c, total):
      idx = jax.lax.dynamic_slice(order, (c * REGION_CHUNK,), (REGION_CHUNK,))
      live = c * REGION_CHUNK + jnp.arange(REGION_CHUNK) < r
      w = frechet_distance(mx[idx, None], cx[idx, None], neg_means[None], neg_covs[None])
      exp_neg = jnp.mean(jnp.exp(-w / TEMPERATURE), -1)  # [REGION_CHUNK]
      ell = -jnp.log(1.0 / (exp_neg + LOSS_EPS) + LOSS_EPS)
      return total + jnp.sum(jnp.where(live, ell, 0.0))

    chunks = (r + REGION_CHUNK - 1) // REGION_CHUNK
    total = jax.lax.fori_loop(0, chunks, chunk, jnp.zeros((), jnp.float32))
    loss = total / jnp.maximum(r, 1).astype(jnp.float32)
    return {"means": means, "covs": covs, "count": count}, (loss, r > 0)

  bank, (loss, counted) = jax.lax.scan(one, bank, (mu_x, cov_x, mu_y, cov_y, valid))
  return bank, jnp.where(counted, loss, 0.0), counted


def init_state(dim: int) -> dict[str, Array]:
  """The regularizer's state: the bank (``init_bank``) and the steps taken (for the epoch of
  ``released_weight``)."""
  return {"bank": init_bank(dim), "step": jnp.zeros((), jnp.int32)}


def released_rdc_loss(
    params,
    settings,
    predictions,
    batch,
    rng: Array,
    state: dict[str, Array],
    *,
    steps_per_epoch: int,
) -> tuple[Array, dict[str, Array], dict[str, Array]]:
  """The released objective's region-contrast term of one batch, its logs and the next state.

  a_θ (``settings.encoder()``, the released shape with ``config.regularizer.mapping``) maps every
  (prediction of an unlabelled task, ground truth of a labelled task) slot
  (``mapping.mapped_slots``, in the released loop order); the maps are upsampled bilinearly to
  half the input size (144x192 at 288x384; ``F.interpolate`` without ``align_corners``) and the
  gray-value regions are read there by nearest sampling (``regions[:, ::2, ::2]``); then
  ``region_statistics`` and ``contrast`` in slot order. Everything is under ``stop_gradient``.

  Args:
    params, settings, predictions, batch, rng: as ``rdc.rdc_loss`` (``batch["regions"]`` int32
      [B, H, W] the gray values 0..255, −1 none: ``config.regions.relabel = "none"``).
    state: ``init_state``'s.
    steps_per_epoch: the epoch length, for the weight's per-epoch ramp.

  Returns:
    (w_e · Σ_slots loss / B, a float32 scalar constant; logs "released_loss" (Σ_slots loss / B),
    "weight" (w_e), "valid_pairs", "valid_regions", "bank_count"; the next state).

  Raises:
    ValueError: no ``regions`` in the batch, or an odd image size.
  """
  from mtjax.regularizers import mapping  # pylint: disable=g-import-not-at-top

  if "regions" not in batch:
    raise ValueError(
        "RDC as released reads batch['regions'] (the SAM gray values): set "
        "config.regions.source='files' with config.regions.relabel='none'"
    )
  first = predictions[settings.tasks[0]]
  batch_size, height, width = first.shape[:3]
  if height % 2 or width % 2:
    raise ValueError(f"RDC as released samples regions at half size: {height}x{width} is odd")
  with jax.named_scope("rdc_mapping"):  # Profiles name the stages (tools/profile_train_step.py).
    _, _, slot_valid, f_pred, f_gt = mapping.mapped_slots(params, settings, predictions, batch, rng)
  f_pred, f_gt = jax.lax.stop_gradient((f_pred, f_gt))
  slots = f_pred.shape[1]
  size = (height // 2, width // 2)
  up = lambda f: jax.image.resize(
      f.reshape(-1, *f.shape[2:]), (batch_size * slots, *size, f.shape[-1]), "bilinear"
  )
  gray = jnp.repeat(batch["regions"][:, ::2, ::2], slots, axis=0)
  n = gray.shape[0]  # One moments call for both maps, as rdc.py.
  with jax.named_scope("rdc_moments"):
    means, covs, valid = region_statistics(
        jnp.concatenate([up(f_pred), up(f_gt)]), jnp.concatenate([gray, gray])
    )
  mu_x, cov_x, mu_y, cov_y, valid = means[:n], covs[:n], means[n:], covs[n:], valid[:n]
  with jax.named_scope("rdc_released_contrast"):
    bank, loss, counted = contrast(
        state["bank"], mu_x, cov_x, mu_y, cov_y, valid, slot_valid.reshape(-1).astype(bool)
    )
  released = jnp.sum(loss) / batch_size
  weight = released_weight(state["step"] // steps_per_epoch)
  logs = {
      "released_loss": released,
      "weight": weight,
      "valid_pairs": jnp.sum(counted).astype(jnp.float32),
      "valid_regions": jnp.sum(valid & counted[:, None]).astype(jnp.float32),
      "bank_count": bank["count"].astype(jnp.float32),
  }
  total = jax.lax.stop_gradient(weight * released)
  return total, logs, {"bank": bank, "step": state["step"] + 1}
