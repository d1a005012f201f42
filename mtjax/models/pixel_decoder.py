"""Mask2Former's pixel decoder (Cheng et al., CVPR 2022) in Flax: the multi-scale deformable
attention encoder over the backbone's three coarsest maps, then a feature pyramid down to stride 4
and the mask features. Equal to ``transformers``' ``Mask2FormerPixelDecoder`` in eval mode (tested
with random weights: ``tests/test_pixel_decoder.py``).

Given backbone maps at strides (4, 8, 16, 32):

1. the three coarsest (32, 16, 8, in that order) are projected to ``feature_size`` channels (1x1
   conv + GroupNorm(32)), flattened and concatenated into S tokens, each with a normalised 2-D sine
   position embedding plus a learned embedding of its level;
2. ``encoder_layers`` post-norm layers: h ← LN(h + MSDeformAttn(h + pos, h)); h ← LN(h + FFN(h)),
   each token's reference point the centre of its cell, 4 points per head and level;
3. the stride-8 output, upsampled bilinearly (``align_corners=False``), is added to the stride-4
   map's lateral projection (1x1 conv, no bias, GroupNorm) and refined by a 3x3 conv + GroupNorm +
   ReLU;
4. ``mask_features`` = a 1x1 conv of that stride-4 map; ``multi_scale_features`` = the encoder's
   three maps (coarsest first), which the transformer decoder attends to in turn.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.models import deformable_attention, layers

__all__ = ["PixelDecoder", "PixelDecoderSettings", "sine_position_embedding"]

LEVELS = 3  # The encoder attends over the three coarsest backbone maps.
POINTS = 4  # Sampling points per head and level.


@dataclasses.dataclass(frozen=True)
class PixelDecoderSettings:
  """Sizes (``transformers.Mask2FormerConfig``'s fields of the same names; its defaults)."""

  feature_size: int = 256
  mask_feature_size: int = 256
  num_attention_heads: int = 8
  encoder_layers: int = 6
  encoder_feedforward_dim: int = 1024
  common_stride: int = 4
  feature_strides: tuple[int, ...] = (4, 8, 16, 32)
  # Rematerialise each encoder layer in the backward pass (``nn.remat``: only its inputs kept);
  # the variables and values are the same. Not a ``transformers.Mask2FormerConfig`` field.
  remat: bool = False


def sine_position_embedding(height: int, width: int, channels: int) -> np.ndarray:
  """float32 [h, w, channels]: DETR's normalised sine embedding (y's channels, then x's), each
  axis's positions 1..n scaled to (0, 2π], frequencies 10000^(2⌊i/2⌋ / (channels / 2))."""
  half = channels // 2
  eps, scale = 1e-6, 2 * math.pi
  y = np.arange(1, height + 1, dtype=np.float32) / (height + eps) * scale
  x = np.arange(1, width + 1, dtype=np.float32) / (width + eps) * scale
  dim_t = (10000 ** (2 * (np.arange(half) // 2) / half)).astype(np.float32)

  def embed(pos):  # [n] -> [n, half]: sin on even channels, cos on odd, interleaved.
    angles = pos[:, None] / dim_t
    return np.stack([np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])], axis=-1).reshape(
        len(pos), half
    )

  ey, ex = embed(y), embed(x)
  return np.concatenate(
      [
          np.broadcast_to(ey[:, None], (height, width, half)),
          np.broadcast_to(ex[None], (height, width, half)),
      ],
      axis=-1,
  ).astype(np.float32)


def _resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
  """PyTorch's ``interpolate(size=..., mode="bilinear", align_corners=False)`` (no antialiasing)."""
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "linear", antialias=False)


class DeformableAttention(nn.Module):
  """MSDeformAttn over the levels' tokens: offsets and weights from the query, values from the
  (position-free) tokens."""

  dim: int
  heads: int
  shapes: tuple[tuple[int, int], ...]

  @nn.compact
  def __call__(self, queries, tokens, reference):
    """queries, tokens: [B, S, C]; reference: [S, 2] (x, y) in [0, 1]. Returns [B, S, C]."""
    b, s, _ = queries.shape
    levels = len(self.shapes)
    values = nn.Dense(self.dim, name="value_proj")(tokens).reshape(b, s, self.heads, -1)
    offsets = nn.Dense(self.heads * levels * POINTS * 2, name="sampling_offsets")(queries)
    offsets = offsets.reshape(b, s, self.heads, levels, POINTS, 2)
    weights = nn.Dense(self.heads * levels * POINTS, name="attention_weights")(queries)
    weights = jax.nn.softmax(weights.reshape(b, s, self.heads, levels * POINTS), axis=-1)
    weights = weights.reshape(b, s, self.heads, levels, POINTS)
    normalizer = jnp.asarray([[w, h] for h, w in self.shapes], jnp.float32)  # (x, y) per level.
    locations = (
        reference[None, :, None, None, None, :] + offsets / normalizer[None, None, None, :, None]
    )
    out = deformable_attention.multi_scale_deformable_attention(
        values, self.shapes, locations, weights
    )
    return nn.Dense(self.dim, name="output_proj")(out)


class EncoderLayer(nn.Module):
  """A post-norm deformable encoder layer (module docstring, step 2)."""

  settings: PixelDecoderSettings
  shapes: tuple[tuple[int, int], ...]

  @nn.compact
  def __call__(self, h, pos, reference):
    s = self.settings
    attended = DeformableAttention(
        s.feature_size, s.num_attention_heads, self.shapes, name="self_attn"
    )(h + pos, h, reference)
    h = nn.LayerNorm(epsilon=1e-5, name="self_attn_layer_norm")(h + attended)
    ffn = nn.Dense(s.feature_size, name="fc2")(
        nn.relu(nn.Dense(s.encoder_feedforward_dim, name="fc1")(h))
    )
    return nn.LayerNorm(epsilon=1e-5, name="final_layer_norm")(h + ffn)


class PixelDecoder(nn.Module):
  """The pixel decoder (module docstring).

  Attributes:
    settings: the sizes (``PixelDecoderSettings``).
  """

  settings: PixelDecoderSettings = PixelDecoderSettings()

  @nn.compact
  def __call__(self, features):
    """Mask features and the multi-scale maps of a backbone's feature maps.

    Args:
      features: the backbone's maps, finest first, float [B, h_i, w_i, C_i] at
        ``settings.feature_strides`` (Swin: strides 4, 8, 16, 32).

    Returns:
      (mask_features float [B, h_0, w_0, mask_feature_size], [3 maps float [B, h, w,
      feature_size], coarsest first]).

    Raises:
      ValueError: fewer than 4 maps, or a pyramid that does not reach ``common_stride``.
    """
    s = self.settings
    if len(features) < LEVELS + 1:
      raise ValueError(
          f"the pixel decoder takes >= {LEVELS + 1} backbone maps, got {len(features)}"
      )
    fpn_levels = int(np.log2(min(s.feature_strides[-LEVELS:])) - np.log2(s.common_stride))
    if fpn_levels < 1:
      raise ValueError(
          f"feature_strides {s.feature_strides} and common_stride {s.common_stride}: the pyramid "
          "must have a level below the encoder's"
      )
    groups = lambda name: nn.GroupNorm(num_groups=32, epsilon=1e-5, name=name)
    level_embed = self.param("level_embed", nn.initializers.normal(1.0), (LEVELS, s.feature_size))
    coarse = list(features[::-1][:LEVELS])  # Strides 32, 16, 8.
    tokens, positions, shapes = [], [], []
    for level, x in enumerate(coarse):
      b, h, w, _ = x.shape
      x = layers.Conv(s.feature_size, 1, name=f"input_projections_{level}_conv")(x)
      x = groups(f"input_projections_{level}_norm")(x)
      tokens.append(x.reshape(b, h * w, s.feature_size))
      pos = sine_position_embedding(h, w, s.feature_size).reshape(h * w, s.feature_size)
      positions.append(jnp.asarray(pos) + level_embed[level])
      shapes.append((h, w))
    shapes = tuple(shapes)
    h_tokens = jnp.concatenate(tokens, axis=1)
    pos = jnp.concatenate(positions, axis=0)[None]
    reference = jnp.concatenate(
        [
            jnp.stack(
                jnp.meshgrid((jnp.arange(w) + 0.5) / w, (jnp.arange(h) + 0.5) / h, indexing="xy"),
                axis=-1,
            ).reshape(h * w, 2)
            for h, w in shapes
        ],
        axis=0,
    )
    layer = nn.remat(EncoderLayer) if s.remat else EncoderLayer
    for i in range(s.encoder_layers):
      h_tokens = layer(s, shapes, name=f"encoder_layers_{i}")(h_tokens, pos, reference)
    outputs, start = [], 0
    for h, w in shapes:
      outputs.append(h_tokens[:, start : start + h * w].reshape(-1, h, w, s.feature_size))
      start += h * w
    for idx, x in enumerate(features[:fpn_levels][::-1]):
      k = fpn_levels - idx  # transformers' adapter_k / layer_k, k = 1 the finest.
      lateral = layers.Conv(s.feature_size, 1, use_bias=False, name=f"adapter_{k}_conv")(x)
      lateral = groups(f"adapter_{k}_norm")(lateral)
      out = lateral + _resize_bilinear(outputs[-1], lateral.shape[1], lateral.shape[2])
      out = layers.Conv(s.feature_size, 3, use_bias=False, name=f"layer_{k}_conv")(out)
      outputs.append(nn.relu(groups(f"layer_{k}_norm")(out)))
    mask_features = layers.Conv(s.mask_feature_size, 1, name="mask_projection")(outputs[-1])
    return mask_features, outputs[:LEVELS]
