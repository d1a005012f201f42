"""Hugging Face ``Mask2FormerPixelDecoder`` weights -> ``mtjax.models.pixel_decoder.PixelDecoder``
variables, by name (a Mask2Former checkpoint's ``model.pixel_level_module.decoder.`` keys; layouts
as ``mtjax.models.state_dict`` says)."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from mtjax.models import pixel_decoder
from mtjax.models import state_dict as state_dict_lib

__all__ = ["convert_state_dict", "flax_path"]

_RULES = (
    (r"input_projections\.(\d+)\.0\.(weight|bias)", lambda m: (f"input_projections_{m[1]}_conv",)),
    (r"input_projections\.(\d+)\.1\.(weight|bias)", lambda m: (f"input_projections_{m[1]}_norm",)),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(weight|bias)",
        lambda m: (f"encoder_layers_{m[1]}", "self_attn", m[2]),
    ),
    (
        r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|final_layer_norm|fc1|fc2)\.(weight|bias)",
        lambda m: (f"encoder_layers_{m[1]}", m[2]),
    ),
    (r"mask_projection\.(weight|bias)", lambda m: ("mask_projection",)),
    (r"adapter_(\d+)\.0\.(weight|bias)", lambda m: (f"adapter_{m[1]}_conv",)),
    (r"adapter_(\d+)\.1\.(weight|bias)", lambda m: (f"adapter_{m[1]}_norm",)),
    (r"layer_(\d+)\.0\.(weight|bias)", lambda m: (f"layer_{m[1]}_conv",)),
    (r"layer_(\d+)\.1\.(weight|bias)", lambda m: (f"layer_{m[1]}_norm",)),
)  # fmt: skip


def flax_path(key: str) -> tuple[str, ...]:
  """The Flax parameter path of a pixel-decoder key (prefix removed), ``()`` if there is none."""
  if key == "level_embed":
    return ("level_embed",)
  return state_dict_lib.match_rules(key, _RULES)


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    settings: pixel_decoder.PixelDecoderSettings,
    feature_shapes: list[tuple[int, int, int]],
    *,
    prefix: str = "",
) -> dict:
  """Flax ``{"params": ...}`` of ``PixelDecoder(settings)`` from a Hugging Face state dict.

  Args:
    state_dict: name -> array; keys outside ``prefix`` are ignored.
    settings: the decoder's sizes.
    feature_shapes: the backbone maps' (h, w, channels), finest first (the channels and the
      number of maps fix the parameters' shapes).
    prefix: ``""`` for a ``Mask2FormerPixelDecoder`` state dict,
      ``"model.pixel_level_module.decoder."`` inside a Mask2Former checkpoint.

  Returns:
    ``{"params": nested dict}``, float32.

  Raises:
    ValueError: a key under ``prefix`` of no parameter, a parameter missing, or a shape mismatch.
  """
  features = [np.zeros((1, h, w, c), np.float32) for h, w, c in feature_shapes]
  expected = state_dict_lib.expected_shapes(
      lambda: pixel_decoder.PixelDecoder(settings).init(jax.random.key(0), features)
  )
  return state_dict_lib.assemble(state_dict, prefix, flax_path, expected, "pixel decoder")
