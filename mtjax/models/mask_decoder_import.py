"""Hugging Face ``Mask2FormerTransformerModule`` weights -> ``mtjax.models.mask_decoder.MaskDecoder``
variables, by name (a Mask2Former checkpoint's ``model.transformer_module.`` keys; layouts as
``mtjax.models.state_dict`` says, ``nn.MultiheadAttention``'s packed ``in_proj_weight`` [3C, C]
becoming ``in_proj_kernel`` [C, 3C])."""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import numpy as np

from mtjax.models import mask_decoder
from mtjax.models import state_dict as state_dict_lib

__all__ = ["convert_state_dict", "flax_path"]

_LAYER = r"decoder\.layers\.(\d+)\."
_RULES = (
    (_LAYER + r"(self_attn)\.([qkv]_proj|out_proj)\.(weight|bias)", lambda m: (f"layers_{m[1]}", m[2], m[3])),
    (_LAYER + r"cross_attn\.out_proj\.(weight|bias)", lambda m: (f"layers_{m[1]}", "cross_attn", "out_proj")),
    (_LAYER + r"(self_attn_layer_norm|cross_attn_layer_norm|final_layer_norm|fc1|fc2)\.(weight|bias)", lambda m: (f"layers_{m[1]}", m[2])),
    (r"decoder\.layernorm\.(weight|bias)", lambda m: ("layernorm",)),
    (r"decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.(weight|bias)", lambda m: (f"mask_embedder_{m[1]}",)),
    (r"input_projections\.(\d+)\.(weight|bias)", lambda m: (f"input_projections_{m[1]}",)),
)  # fmt: skip


def flax_path(key: str) -> tuple[str, ...]:
  """The Flax parameter path of a transformer-module key (prefix removed), ``()`` if none."""
  embeddings = {"queries_embedder.weight", "queries_features.weight", "level_embed.weight"}
  if key in embeddings:
    return (key.split(".")[0],)
  packed = re.fullmatch(_LAYER + r"cross_attn\.in_proj_(weight|bias)", key)
  if packed:
    return (
        f"layers_{packed[1]}",
        "cross_attn",
        "in_proj_kernel" if packed[2] == "weight" else "in_proj_bias",
    )
  return state_dict_lib.match_rules(key, _RULES)


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    settings: mask_decoder.MaskDecoderSettings,
    feature_channels: int,
    *,
    prefix: str = "",
) -> dict:
  """Flax ``{"params": ...}`` of ``MaskDecoder(settings)`` from a Hugging Face state dict.

  Args:
    state_dict: name -> array; keys outside ``prefix`` are ignored.
    settings: the decoder's sizes.
    feature_channels: the channels of the pixel decoder's maps (its ``feature_size``).
    prefix: ``""`` for a ``Mask2FormerTransformerModule`` state dict,
      ``"model.transformer_module."`` inside a Mask2Former checkpoint.

  Returns:
    ``{"params": nested dict}``, float32.

  Raises:
    ValueError: a key under ``prefix`` of no parameter, a parameter missing, or a shape mismatch.
  """
  maps = [np.zeros((1, 2, 2, feature_channels), np.float32)] * 3
  mask_features = np.zeros((1, 4, 4, settings.mask_feature_size), np.float32)
  expected = state_dict_lib.expected_shapes(
      lambda: mask_decoder.MaskDecoder(settings).init(jax.random.key(0), maps, mask_features)
  )
  return state_dict_lib.assemble(state_dict, prefix, flax_path, expected, "Mask2Former decoder")
