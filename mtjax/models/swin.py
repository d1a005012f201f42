"""Swin Transformer (Liu et al., ICCV 2021) in Flax: the backbone of MT-CP's Mask2Former trunk and
of its per-task decoders (Fontana et al., WACV 2025).

Equal to Hugging Face ``transformers``' ``SwinModel`` / ``SwinBackbone`` in eval mode (tested with
random weights: ``tests/test_swin.py``), module by module, so that a checkpoint converts by name
(``mtjax.models.swin_import``):

* **patch embedding**: a ``patch_size`` x ``patch_size`` conv with stride ``patch_size`` (the
  image zero-padded right / bottom to a multiple first), flattened, LayerNorm;
* **a stage**: ``depth`` blocks, every second one with its windows shifted by ``window_size // 2``
  (a cyclic roll and an attention mask that keeps tokens from attending across the roll's seams,
  −100 added to their logits), then patch merging (all stages but the last);
* **a block**: LayerNorm, window multi-head self-attention with a learned relative position bias
  ((2w − 1)² entries per head, indexed by the pair's offset), residual; LayerNorm, MLP (GELU,
  exact), residual. A map whose side is not a multiple of the window is zero-padded after the
  first LayerNorm, and the padded tokens take part in attention unmasked, as in the reference;
* **patch merging**: the 2x2 neighbours concatenated ((0, 0), (1, 0), (0, 1), (1, 1) as (row,
  column)), LayerNorm over 4C, a linear map to 2C without bias (odd sides zero-padded first).

``always_partition=False`` (``SwinModel``'s default) shrinks the window to the map's smaller side
and drops the shift when that side is at most ``window_size``; ``True`` (``SwinBackbone``, which
Mask2Former uses) never does. Shapes are static: everything above is decided in Python from the
input's shape, so the model jits for any fixed image size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.models import layers

__all__ = ["SwinBackbone", "SwinSettings", "relative_position_index", "shifted_window_mask"]

# The logit added between tokens from different regions of a shifted window (the reference's).
MASK_VALUE = -100.0


@dataclasses.dataclass(frozen=True)
class SwinSettings:
  """A Swin's sizes (``transformers.SwinConfig``'s fields of the same names).

  Swin-S (Mask2Former's ``facebook/mask2former-swin-small-*``): embed_dim 96, depths (2, 2, 18,
  2), num_heads (3, 6, 12, 24), window_size 7.
  """

  embed_dim: int = 96
  depths: tuple[int, ...] = (2, 2, 18, 2)
  num_heads: tuple[int, ...] = (3, 6, 12, 24)
  window_size: int = 7
  patch_size: int = 4
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  layer_norm_eps: float = 1e-5
  # Rematerialise each block in the backward pass (``nn.remat``: only its input kept); the
  # variables and values are the same. Not a ``transformers.SwinConfig`` field.
  remat: bool = False


def relative_position_index(window: int) -> np.ndarray:
  """int32 [w², w²]: the row of the (2w − 1)² bias table each (query, key) pair of a w x w window
  reads, (Δrow + w − 1) (2w − 1) + Δcolumn + w − 1 with Δ = query − key."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
  delta = coords[:, :, None] - coords[:, None, :] + window - 1
  return (delta[0] * (2 * window - 1) + delta[1]).astype(np.int32)


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
  """float32 [num_windows, w², w²]: 0 between tokens of one region of the rolled map, −100
  between tokens of different regions (each axis splits at side − window and side − shift)."""
  rows = (np.arange(height) >= height - window).astype(int) + (np.arange(height) >= height - shift)
  cols = (np.arange(width) >= width - window).astype(int) + (np.arange(width) >= width - shift)
  labels = rows[:, None] * 3 + cols[None, :]
  windows = _partition(labels[None, :, :, None], window).reshape(-1, window * window)
  return np.where(windows[:, None, :] != windows[:, :, None], MASK_VALUE, 0.0).astype(np.float32)


def _partition(x, window: int):
  """[B, H, W, C] -> [B · (H / w) · (W / w), w, w, C], windows in row-major order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def _reverse(windows, window: int, height: int, width: int):
  """The inverse of ``_partition``: [B · n, w, w, C] -> [B, H, W, C]."""
  c = windows.shape[-1]
  x = windows.reshape(-1, height // window, width // window, window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


class RelativePositionBias(nn.Module):
  """The learned [num_heads, w², w²] bias of window attention (table [(2w − 1)², heads])."""

  num_heads: int
  window: int

  @nn.compact
  def __call__(self):
    table = self.param(
        "relative_position_bias_table",
        nn.initializers.truncated_normal(0.02),
        ((2 * self.window - 1) ** 2, self.num_heads),
    )
    index = relative_position_index(self.window).reshape(-1)
    area = self.window * self.window
    return table[index].reshape(area, area, self.num_heads).transpose(2, 0, 1)


class WindowAttention(nn.Module):
  """Multi-head self-attention inside each window, with the relative position bias."""

  dim: int
  num_heads: int
  window: int
  qkv_bias: bool = True

  @nn.compact
  def __call__(self, x, mask=None):
    """x: [B · n, w², C]; mask: None or [n, w², w²]. Returns [B · n, w², C]."""
    head_dim = self.dim // self.num_heads
    split = lambda t: t.reshape(*t.shape[:-1], self.num_heads, head_dim)
    q = split(nn.Dense(self.dim, use_bias=self.qkv_bias, name="q_proj")(x))
    k = split(nn.Dense(self.dim, use_bias=self.qkv_bias, name="k_proj")(x))
    v = split(nn.Dense(self.dim, use_bias=self.qkv_bias, name="v_proj")(x))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
    logits = (
        logits + RelativePositionBias(self.num_heads, self.window, name="relative_position_bias")()
    )
    if mask is not None:
      n = mask.shape[0]
      logits = logits.reshape(-1, n, *logits.shape[1:]) + mask[None, :, None]
      logits = logits.reshape(-1, *logits.shape[2:])
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(*x.shape[:-1], self.dim)
    return nn.Dense(self.dim, name="o_proj")(out)


class SwinBlock(nn.Module):
  """One Swin block (module docstring): (S)W-MSA and MLP with pre-LayerNorms and residuals."""

  dim: int
  num_heads: int
  window: int
  shift: int
  settings: SwinSettings
  always_partition: bool = False

  @nn.compact
  def __call__(self, x, height: int, width: int):
    """x: [B, H · W, C] -> [B, H · W, C]."""
    window, shift = self.window, self.shift
    if not self.always_partition and min(height, width) <= window:
      window, shift = min(height, width), 0
    eps = self.settings.layer_norm_eps
    b, _, c = x.shape
    h = nn.LayerNorm(epsilon=eps, name="layernorm_before")(x).reshape(b, height, width, c)
    pad_h, pad_w = (-height) % window, (-width) % window
    h = jnp.pad(h, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    hp, wp = height + pad_h, width + pad_w
    if shift:
      h = jnp.roll(h, (-shift, -shift), axis=(1, 2))
    mask = jnp.asarray(shifted_window_mask(hp, wp, window, shift)) if shift else None
    windows = _partition(h, window).reshape(-1, window * window, c)
    attended = WindowAttention(
        self.dim, self.num_heads, window, self.settings.qkv_bias, name="attention"
    )(windows, mask)
    h = _reverse(attended.reshape(-1, window, window, c), window, hp, wp)
    if shift:
      h = jnp.roll(h, (shift, shift), axis=(1, 2))
    x = x + h[:, :height, :width].reshape(b, height * width, c)
    h = nn.LayerNorm(epsilon=eps, name="layernorm_after")(x)
    hidden = int(self.settings.mlp_ratio * self.dim)
    h = nn.Dense(hidden, name="fc1")(h)
    h = nn.Dense(self.dim, name="fc2")(nn.gelu(h, approximate=False))
    return x + h


class PatchMerging(nn.Module):
  """2x2 patch merging (module docstring): [B, H · W, C] -> [B, ⌈H/2⌉ · ⌈W/2⌉, 2C]."""

  dim: int

  @nn.compact
  def __call__(self, x, height: int, width: int):
    b, _, c = x.shape
    x = x.reshape(b, height, width, c)
    x = jnp.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
    x = jnp.concatenate([x[:, r::2, col::2] for col in range(2) for r in range(2)], axis=-1)
    x = x.reshape(b, -1, 4 * c)
    x = nn.LayerNorm(epsilon=1e-5, name="norm")(x)
    return nn.Dense(2 * self.dim, use_bias=False, name="reduction")(x)


class SwinBackbone(nn.Module):
  """Swin as a backbone: the feature map of each stage before its patch merging.

  Attributes:
    settings: the sizes (``SwinSettings``).
    out_norms: LayerNorm each stage's output (``SwinBackbone``'s ``hidden_states_norms``, which
      Mask2Former uses); False: the raw stage outputs (``SwinModel``'s hidden states).
    always_partition: see the module docstring (True for ``SwinBackbone``).
    patch_embedding: embed image patches first; False: the input is already a map of
      ``embed_dim`` channels, taken as the tokens (MT-CP's per-task decoders run their Swin's
      ``forward2`` so on the trunk's stride-4 map: the patch embedding they build is never applied).
  """

  settings: SwinSettings = SwinSettings()
  out_norms: bool = True
  always_partition: bool = True
  patch_embedding: bool = True

  @nn.compact
  def __call__(self, images) -> list[jax.Array]:
    """Feature maps of the stages.

    Args:
      images: float [B, H, W, 3] (any normalisation; Mask2Former expects ImageNet's mean / std);
        without ``patch_embedding`` a map [B, h, w, embed_dim].

    Returns:
      one float [B, h_i, w_i, C · 2^i] per stage (h_0 = ⌈H / patch_size⌉ or h, then halved,
      rounded up).

    Raises:
      ValueError: ``depths`` and ``num_heads`` of different lengths; without
        ``patch_embedding``, an input whose channels are not ``embed_dim``.
    """
    s = self.settings
    if len(s.depths) != len(s.num_heads):
      raise ValueError(f"Swin depths {s.depths} and num_heads {s.num_heads} differ in length")
    b, height, width, channels = images.shape
    if self.patch_embedding:
      p = s.patch_size
      images = jnp.pad(images, ((0, 0), (0, (-height) % p), (0, (-width) % p), (0, 0)))
      x = layers.Conv(s.embed_dim, p, stride=p, padding=0, name="patch_embeddings")(
          images
      )
      height, width = x.shape[1], x.shape[2]
      x = nn.LayerNorm(epsilon=1e-5, name="embeddings_norm")(x.reshape(b, height * width, -1))
    elif channels != s.embed_dim:
      raise ValueError(
          f"a Swin without patch embedding takes {s.embed_dim} channels, got {channels}"
      )
    else:
      x = images.reshape(b, height * width, channels)
    outputs = []
    for i, (depth, heads) in enumerate(zip(s.depths, s.num_heads)):
      dim = s.embed_dim * 2**i
      # Under remat, height and width (positional 2 and 3, the module 0) are static.
      block = nn.remat(SwinBlock, static_argnums=(2, 3)) if s.remat else SwinBlock
      for j in range(depth):
        x = block(
            dim,
            heads,
            s.window_size,
            0 if j % 2 == 0 else s.window_size // 2,
            s,
            self.always_partition,
            name=f"layers_{i}_blocks_{j}",
        )(x, height, width)
      out = x
      if self.out_norms:
        out = nn.LayerNorm(epsilon=1e-5, name=f"hidden_states_norms_stage{i + 1}")(out)
      outputs.append(out.reshape(b, height, width, dim))
      if i < len(s.depths) - 1:
        x = PatchMerging(dim, name=f"layers_{i}_downsample")(x, height, width)
        height, width = (height + 1) // 2, (width + 1) // 2
    return outputs


def stage_channels(settings: SwinSettings) -> Sequence[int]:
  """The channels of each stage's feature map: embed_dim · 2^i."""
  return tuple(settings.embed_dim * 2**i for i in range(len(settings.depths)))
