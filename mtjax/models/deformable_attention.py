"""Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021, Eq. 3), in jnp: the
attention of Mask2Former's pixel decoder (Cheng et al., CVPR 2022), which MT-CP's trunk runs.

Each query attends to ``points`` sampled locations per head and feature level, placed at its
reference point plus learned offsets, and sums the bilinearly sampled values with learned,
softmax-normalised weights. The sampling is PyTorch's ``grid_sample(mode="bilinear",
padding_mode="zeros", align_corners=False)``, the reference implementation's: a location (x, y) in
[0, 1]² of a level of h x w cells reads the pixel-centre grid at (x w − ½, y h − ½), corners outside
the map contributing zero. It is written as gathers of the four corners from the flattened map
(static shapes, no custom kernels), so it jits, vmaps and differentiates on CPUs, GPUs and TPUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["bilinear_sample", "multi_scale_deformable_attention"]


def bilinear_sample(values: jax.Array, locations: jax.Array, height: int, width: int) -> jax.Array:
  """``grid_sample`` (bilinear, zeros outside, ``align_corners=False``) of flattened maps.

  Args:
    values: float [N, h · w, D], a map per row, row-major.
    locations: float [N, K, 2], (x, y) in [0, 1]² (values outside read zeros, partly or wholly).
    height, width: h, w (static).

  Returns:
    float [N, K, D].
  """
  x = locations[..., 0] * width - 0.5
  y = locations[..., 1] * height - 0.5
  x0, y0 = jnp.floor(x), jnp.floor(y)
  out = 0.0
  for dy in (0, 1):
    for dx in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      weight = (1.0 - jnp.abs(x - xi)) * (1.0 - jnp.abs(y - yi))
      inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
      index = (jnp.clip(yi, 0, height - 1) * width + jnp.clip(xi, 0, width - 1)).astype(jnp.int32)
      gathered = jnp.take_along_axis(values, index[..., None], axis=1)
      out = out + gathered * jnp.where(inside, weight, 0.0)[..., None]
  return out


def multi_scale_deformable_attention(
    values: jax.Array,
    shapes: Sequence[tuple[int, int]],
    locations: jax.Array,
    weights: jax.Array,
) -> jax.Array:
  """Σ_levels Σ_points weight · value(location), per query and head (Deformable DETR, Eq. 3).

  Args:
    values: float [B, S, H, D], the levels' maps flattened and concatenated (S = Σ h_l w_l), per
      head H of D channels.
    shapes: the levels' (h_l, w_l), static.
    locations: float [B, Q, H, L, P, 2], sampling locations (x, y) in [0, 1]² per query, head,
      level and point.
    weights: float [B, Q, H, L, P], attention weights (softmax-normalised over L · P by the caller).

  Returns:
    float [B, Q, H · D].

  Raises:
    ValueError: ``shapes`` do not add up to S, or disagree with L.
  """
  b, s, heads, d = values.shape
  q, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
  if sum(h * w for h, w in shapes) != s or len(shapes) != levels:
    raise ValueError(f"level shapes {list(shapes)} do not give S = {s} over L = {levels} levels")
  out = 0.0
  start = 0
  for level, (h, w) in enumerate(shapes):
    level_values = (
        values[:, start : start + h * w].transpose(0, 2, 1, 3).reshape(b * heads, h * w, d)
    )
    start += h * w
    level_locations = (
        locations[:, :, :, level].transpose(0, 2, 1, 3, 4).reshape(b * heads, q * points, 2)
    )
    sampled = bilinear_sample(level_values, level_locations, h, w).reshape(b, heads, q, points, d)
    level_weights = weights[:, :, :, level].transpose(0, 2, 1, 3)  # [B, H, Q, P]
    out = out + jnp.einsum("bhqpd,bhqp->bqhd", sampled, level_weights)
  return out.reshape(b, q, heads * d)
