"""Mask2Former's masked-attention transformer decoder (Cheng et al., CVPR 2022) in Flax. Equal to
``transformers``' ``Mask2FormerTransformerModule`` in eval mode (tested with random weights:
``tests/test_mask_decoder.py``).

``num_queries`` learned queries (features, and positional embeddings added to queries and keys)
cross-attend to the pixel decoder's three maps in turn (coarsest first, round robin), each map with
the normalised sine embedding on its keys and a learned level embedding on its values and keys.
Layer l's cross-attention is **masked**: a query attends only where the mask it predicted after
layer l − 1 is above ½ (the mask resized bilinearly to that map; a query whose mask covers no cell
attends everywhere). Each post-norm layer is masked cross-attention, then self-attention among the
queries, then an FFN (ReLU). After the input and after every layer, the final LayerNorm's output
predicts masks: an MLP (3 layers, ReLU) maps each query to ``mask_feature_size`` channels, dotted
with the mask features at every stride-4 pixel.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.models import layers, pixel_decoder

__all__ = ["MaskDecoder", "MaskDecoderSettings"]

LEVELS = 3


@dataclasses.dataclass(frozen=True)
class MaskDecoderSettings:
  """Sizes (``transformers.Mask2FormerConfig``'s fields of the same names; its defaults).

  ``decoder_layers`` counts as the config does: the decoder runs ``decoder_layers − 1`` layers.
  """

  hidden_dim: int = 256
  num_queries: int = 100
  num_attention_heads: int = 8
  decoder_layers: int = 10
  dim_feedforward: int = 2048
  mask_feature_size: int = 256
  enforce_input_projection: bool = False


def _attention(q, k, v, heads: int, mask=None):
  """Multi-head attention of projected [B, T, C], [B, S, C], [B, S, C]; mask bool [B, T, S],
  True = not attended. Returns [B, T, C]."""
  b, t, c = q.shape
  split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, c // heads)
  logits = jnp.einsum("bthd,bshd->bhts", split(q) * (c // heads) ** -0.5, split(k))
  if mask is not None:
    logits = jnp.where(mask[:, None], -jnp.inf, logits)
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bhts,bshd->bthd", weights, split(v)).reshape(b, t, c)


class CrossAttention(nn.Module):
  """``torch.nn.MultiheadAttention`` (one packed input projection, ``in_proj``)."""

  dim: int
  heads: int

  @nn.compact
  def __call__(self, query, key, value, mask):
    kernel = self.param(
        "in_proj_kernel", nn.initializers.xavier_uniform(), (self.dim, 3 * self.dim)
    )
    bias = self.param("in_proj_bias", nn.initializers.zeros, (3 * self.dim,))
    d = self.dim
    q = query @ kernel[:, :d] + bias[:d]
    k = key @ kernel[:, d : 2 * d] + bias[d : 2 * d]
    v = value @ kernel[:, 2 * d :] + bias[2 * d :]
    return nn.Dense(self.dim, name="out_proj")(_attention(q, k, v, self.heads, mask))


class SelfAttention(nn.Module):
  """DETR's self-attention: position on queries and keys, not on values."""

  dim: int
  heads: int

  @nn.compact
  def __call__(self, h, pos):
    q = nn.Dense(self.dim, name="q_proj")(h + pos)
    k = nn.Dense(self.dim, name="k_proj")(h + pos)
    v = nn.Dense(self.dim, name="v_proj")(h)
    return nn.Dense(self.dim, name="out_proj")(_attention(q, k, v, self.heads))


class DecoderLayer(nn.Module):
  """A post-norm decoder layer (module docstring)."""

  settings: MaskDecoderSettings

  @nn.compact
  def __call__(self, h, query_pos, memory, memory_pos, mask):
    s = self.settings
    attended = CrossAttention(s.hidden_dim, s.num_attention_heads, name="cross_attn")(
        h + query_pos, memory + memory_pos, memory, mask
    )
    h = nn.LayerNorm(epsilon=1e-5, name="cross_attn_layer_norm")(h + attended)
    attended = SelfAttention(s.hidden_dim, s.num_attention_heads, name="self_attn")(h, query_pos)
    h = nn.LayerNorm(epsilon=1e-5, name="self_attn_layer_norm")(h + attended)
    ffn = nn.Dense(s.hidden_dim, name="fc2")(nn.relu(nn.Dense(s.dim_feedforward, name="fc1")(h)))
    return nn.LayerNorm(epsilon=1e-5, name="final_layer_norm")(h + ffn)


class MaskDecoder(nn.Module):
  """The transformer decoder (module docstring).

  Attributes:
    settings: the sizes (``MaskDecoderSettings``).
  """

  settings: MaskDecoderSettings = MaskDecoderSettings()

  @nn.compact
  def __call__(self, multi_scale_features, mask_features):
    """Queries and mask predictions.

    Args:
      multi_scale_features: the pixel decoder's 3 maps, coarsest first, float [B, h_i, w_i, C].
      mask_features: float [B, H4, W4, mask_feature_size], the pixel decoder's stride-4 map.

    Returns:
      (queries float [B, Q, hidden_dim], the output of the last layer before the final norm;
      intermediate float [L + 1, B, Q, hidden_dim], the final LayerNorm after the input and each
      layer; masks float [L + 1, B, Q, H4, W4], the mask logits predicted from each of those).

    Raises:
      ValueError: not 3 maps.
    """
    s = self.settings
    if len(multi_scale_features) != LEVELS:
      raise ValueError(f"the decoder takes {LEVELS} maps, got {len(multi_scale_features)}")
    level_embed = self.param("level_embed", nn.initializers.normal(1.0), (LEVELS, s.hidden_dim))
    memories, positions, sizes = [], [], []
    for i, x in enumerate(multi_scale_features):
      b, h, w, c = x.shape
      if c != s.hidden_dim or s.enforce_input_projection:
        x = layers.Conv(s.hidden_dim, 1, name=f"input_projections_{i}")(x)
      memories.append(x.reshape(b, h * w, s.hidden_dim) + level_embed[i])
      positions.append(
          jnp.asarray(pixel_decoder.sine_position_embedding(h, w, s.hidden_dim)).reshape(
              1, h * w, -1
          )
      )
      sizes.append((h, w))
    b = memories[0].shape[0]
    embed = nn.initializers.normal(1.0)
    query_pos = jnp.broadcast_to(
        self.param("queries_embedder", embed, (s.num_queries, s.hidden_dim)),
        (b, s.num_queries, s.hidden_dim),
    )
    h = jnp.broadcast_to(
        self.param("queries_features", embed, (s.num_queries, s.hidden_dim)),
        (b, s.num_queries, s.hidden_dim),
    )
    final_norm = nn.LayerNorm(epsilon=1e-5, name="layernorm")
    mask_mlp = [nn.Dense(s.hidden_dim, name="mask_embedder_0"), nn.Dense(s.hidden_dim, name="mask_embedder_1"),
                nn.Dense(s.mask_feature_size, name="mask_embedder_2")]  # fmt: skip

    def predict(queries, size):
      e = nn.relu(mask_mlp[0](queries))
      e = mask_mlp[2](nn.relu(mask_mlp[1](e)))
      masks = jnp.einsum("bqc,bhwc->bqhw", e, mask_features)
      resized = jax.image.resize(masks, (*masks.shape[:2], *size), "linear", antialias=False)
      blocked = jax.nn.sigmoid(resized).reshape(*masks.shape[:2], -1) < 0.5
      blocked = blocked & ~jnp.all(blocked, axis=-1, keepdims=True)  # Nowhere: everywhere.
      return masks, jax.lax.stop_gradient(blocked)

    normed = final_norm(h)
    intermediate = [normed]
    mask, blocked = predict(normed, sizes[0])
    masks = [mask]
    for i in range(s.decoder_layers - 1):
      level = i % LEVELS
      h = DecoderLayer(s, name=f"layers_{i}")(
          h, query_pos, memories[level], positions[level], blocked
      )
      normed = final_norm(h)
      intermediate.append(normed)
      mask, blocked = predict(normed, sizes[(i + 1) % LEVELS])
      masks.append(mask)
    return h, jnp.stack(intermediate), jnp.stack(masks)
