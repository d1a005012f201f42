"""Region moments: the mean, covariance and pixel count of the features in each region.

The Gaussians of region-aware distribution contrast (Li et al., ECCV 2024, Sec. 3;
shared/reference/METHODS.md §1, step 2); ``mtjax.ops.gaussian`` re-exports ``region_gaussians``
beside the distances between the Gaussians. Pure jnp, usable under ``jit``, ``vmap`` and ``grad``
(a hand-written VJP: JAX's own gradient of the one-hot contraction was ~14x slower).

**Speed on XLA's CPU backend.** Every map's regions are segments of one flat pixel list (one
scatter without batch axes: a vmapped, batched scatter ran 3-9x slower), and the per-pixel outer
products are summed, and in the backward pass applied, in chunks of _MOMENT_CHUNK pixels so that
[chunk, D, D] stays in cache instead of a [P, D, D] array going through memory.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

COVARIANCES = ("full", "diag")

_HIGHEST = lax.Precision.HIGHEST
# Pixels per chunk of the region second moments and their gradient (``_sum_outer_products``).
_MOMENT_CHUNK = 512


def region_gaussians(
    features: Array,
    region_ids: Array,
    num_regions: int,
    *,
    covariance: str = "full",
    eps: float = 1e-4,
    spatial_dims: int = 2,
) -> tuple[Array, Array, Array]:
  """Mean, covariance and pixel count of the features in each region (METHODS.md §1, step 2).

  μ_r = (1/n_r) Σ_{p ∈ r} f_p and Σ_r = (1/n_r) Σ_{p ∈ r} (f_p − μ_r)(f_p − μ_r)ᵀ + εI (the
  maximum-likelihood covariance with shrinkage ε; two-pass: the pixels are centred on their own
  region's mean before the outer products, so a large mean costs no precision). A region with no
  pixel gets μ = 0, Σ = εI and count 0 (finite, masked by the caller via ``counts``); a single-pixel
  region gets Σ = εI. Pixels with id −1 (no region) or any id outside [0, num_regions) belong to no
  region.

  Args:
    features: float [..., P, D] (``spatial_dims=1``) or [..., H, W, D] (``spatial_dims=2``, the
      default), any units; the statistics are computed in its dtype.
    region_ids: integer [..., P] or [..., H, W], the same shape as ``features`` without its last axis.
    num_regions: R, static.
    covariance: ``"full"`` (Σ [..., R, D, D]) or ``"diag"`` (variances [..., R, D]).
    eps: shrinkage ε ≥ 0 added to the diagonal, in squared feature units. ε > 0 keeps every Σ
      positive definite: the KL divergence is then defined and W2's gradients bounded.
    spatial_dims: how many axes before D (and at the end of ``region_ids``) are pixels: 1 or 2;
      the axes before them are batch axes.

  Returns:
    ``(means [..., R, D], covs [..., R, D, D] or [..., R, D], counts int32 [..., R])``.

  Raises:
    ValueError: on an unknown ``covariance``, ``num_regions < 1``, ``eps < 0``, ``spatial_dims``
      not 1 or 2, non-float features, non-integer ids, or shapes that do not match as above.
  """
  if covariance not in COVARIANCES:
    raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
  features, region_ids = jnp.asarray(features), jnp.asarray(region_ids)
  if not isinstance(num_regions, int) or num_regions < 1:
    raise ValueError(f"num_regions must be a positive int, got {num_regions!r}")
  if eps < 0:
    raise ValueError(f"eps must be >= 0, got {eps}")
  if spatial_dims not in (1, 2):
    raise ValueError(
        f"spatial_dims must be 1 ([..., P, D]) or 2 ([..., H, W, D]), got {spatial_dims}"
    )
  if not jnp.issubdtype(features.dtype, jnp.floating):
    raise ValueError(f"features must be floating point, got {features.dtype}")
  if not jnp.issubdtype(region_ids.dtype, jnp.integer):
    raise ValueError(f"region_ids must be integers (−1 = no region), got {region_ids.dtype}")
  if features.ndim < spatial_dims + 1 or features.shape[:-1] != region_ids.shape:
    layout = "[..., P, D] and [..., P]" if spatial_dims == 1 else "[..., H, W, D] and [..., H, W]"
    raise ValueError(
        f"features {features.shape} and region_ids {region_ids.shape} must be {layout} "
        f"(spatial_dims={spatial_dims})"
    )
  lead = region_ids.shape[: region_ids.ndim - spatial_dims]
  num_pixels = math.prod(region_ids.shape[len(lead) :])
  dim = features.shape[-1]
  f = features.reshape(-1, num_pixels, dim)
  ids = region_ids.reshape(-1, num_pixels).astype(jnp.int32)
  # Every map's regions as segments of one flat pixel list (map m's region r is segment m·R + r):
  # one scatter without batch axes. A vmapped (batched) scatter over maps ran 3-9x slower on XLA's
  # CPU backend (region_gaussians of 8 maps at R = D = 32: 107 ms forward, now 32).
  num_maps = f.shape[0]
  in_range = (ids >= 0) & (ids < num_regions)
  segments = ids + num_regions * jnp.arange(num_maps, dtype=jnp.int32)[:, None]
  segments = jnp.where(in_range, segments, -1).reshape(-1)
  means, second, counts = _region_moments(
      f.reshape(-1, dim), segments, num_maps * num_regions, covariance == "full"
  )
  if covariance == "full":
    covs = second + eps * jnp.eye(dim, dtype=f.dtype)
  else:
    covs = second + eps
  means = means.reshape(*lead, num_regions, dim)
  covs = covs.reshape(*lead, num_regions, *second.shape[1:])
  return means, covs, counts.reshape(*lead, num_regions)


def _pixel_chunks(x: Array, chunk: int) -> Array:
  """x [N, ...] zero-padded to a multiple of ``chunk`` and split: [N / chunk, chunk, ...]."""
  pad = -x.shape[0] % chunk
  x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  return x.reshape(-1, chunk, *x.shape[1:])


def _sum_outer_products(centred: Array, segments: Array, num_segments: int) -> Array:
  """Σ_{p in segment s} c_p c_pᵀ: [S, D, D] from centred [N, D] and segments int [N] in [0, S).

  P·D² multiply-adds (not the P·R·D² of a one-hot contraction), over chunks of _MOMENT_CHUNK
  pixels so that the outer products [chunk, D, D] stay in cache instead of a [N, D, D] array
  (28 MiB per 72x96 map at D = 32) passing through memory."""
  chunk = min(_MOMENT_CHUNK, centred.shape[0])
  dim = centred.shape[-1]

  def body(acc, xs):
    c, seg = xs  # Padding pixels are 0 and add nothing to segment 0.
    return acc.at[seg].add(c[:, :, None] * c[:, None, :], mode="promise_in_bounds"), None

  init = jnp.zeros((num_segments, dim, dim), centred.dtype)
  xs = (_pixel_chunks(centred, chunk), _pixel_chunks(segments, chunk))
  return lax.scan(body, init, xs)[0]


def _apply_per_segment(mats: Array, centred: Array, segments: Array) -> Array:
  """mats[s_p] c_p for every pixel p: [N, D] from mats [S, D, D], centred [N, D], segments [N];
  in chunks of _MOMENT_CHUNK pixels, as ``_sum_outer_products``."""
  n = centred.shape[0]
  chunk = min(_MOMENT_CHUNK, n)

  def body(_, xs):
    c, seg = xs
    return None, jnp.einsum("pde,pe->pd", mats[seg], c, precision=_HIGHEST)

  xs = (_pixel_chunks(centred, chunk), _pixel_chunks(segments, chunk))
  return lax.scan(body, None, xs)[1].reshape(-1, centred.shape[-1])[:n]


def _moments_forward(f, segments, num_segments, full):
  """Per segment (one region of one map): mean [S, D], centred second moment [S, D, D] or [S, D],
  count; and the pixels centred on their own segment's mean (0 for pixels of none, segment −1)
  for the backward pass."""
  valid = segments >= 0
  safe = jnp.where(valid, segments, 0)
  counts = jax.ops.segment_sum(valid.astype(f.dtype), safe, num_segments=num_segments)
  inv_n = 1.0 / jnp.maximum(counts, 1.0)
  sums = jax.ops.segment_sum(jnp.where(valid[:, None], f, 0.0), safe, num_segments=num_segments)
  means = sums * inv_n[:, None]
  centred = jnp.where(valid[:, None], f - means[safe], 0.0)
  if full:
    second = _sum_outer_products(centred, safe, num_segments) * inv_n[:, None, None]
  else:
    second = jax.ops.segment_sum(centred * centred, safe, num_segments=num_segments)
    second = second * inv_n[:, None]
  return means, second, counts.astype(jnp.int32), (centred, safe, valid, inv_n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _region_moments(f, segments, num_segments, full):
  return _moments_forward(f, segments, num_segments, full)[:3]


def _region_moments_fwd(f, segments, num_segments, full):
  means, second, counts, res = _moments_forward(f, segments, num_segments, full)
  return (means, second, counts), res


def _region_moments_bwd(num_segments, full, res, cotangents):
  """df_p = (dμ_r + (dΣ_r + dΣ_rᵀ) c_p) / n_r for pixel p of region r (diag: 2 dσ²_r ∘ c_p); the
  path through μ inside c_p = f_p − μ_r vanishes because Σ_{p ∈ r} c_p = 0."""
  del num_segments
  centred, safe, valid, inv_n = res
  d_means, d_second, _ = cotangents
  if full:
    sym = (d_second + jnp.swapaxes(d_second, -1, -2)) * inv_n[:, None, None]
    d_centred = _apply_per_segment(sym, centred, safe)
  else:
    d_centred = 2.0 * (d_second * inv_n[:, None])[safe] * centred
  d_f = d_centred + (d_means * inv_n[:, None])[safe]
  return jnp.where(valid[:, None], d_f, 0.0), None


_region_moments.defvjp(_region_moments_fwd, _region_moments_bwd)
