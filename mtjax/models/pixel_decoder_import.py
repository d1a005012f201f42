"""Hugging Face ``Mask2FormerPixelDecoder`` weights -> ``mtjax.models.pixel_decoder.PixelDecoder``
variables, by name (a Mask2Former checkpoint's ``model.pixel_level_module.decoder.`` keys).

Linear weights [out, in] become kernels [in, out], convs [out, in, kh, kw] become [kh, kw, in,
out], LayerNorm / GroupNorm weights become scales.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from mtjax.models import pixel_decoder

__all__ = ["convert_state_dict"]

_RULES = (
    (r"level_embed", lambda m: ("level_embed",)),
    (r"input_projections\.(\d+)\.0\.(weight|bias)", lambda m: (f"input_projections_{m[1]}_conv",)),
    (r"input_projections\.(\d+)\.1\.(weight|bias)", lambda m: (f"input_projections_{m[1]}_norm",)),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.(sampling_offsets|attention_weights|value_proj|"
        r"output_proj)\.(weight|bias)",
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
)


def _path(name: str) -> tuple[str, ...] | None:
  for pattern, path in _RULES:
    match = re.fullmatch(pattern, name)
    if match:
      prefix = path(match)
      if name == "level_embed":
        return prefix
      is_norm = prefix[-1].endswith("norm")
      leaf = "bias" if name.endswith(".bias") else ("scale" if is_norm else "kernel")
      return (*prefix, leaf)
  return None


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
    feature_shapes: the backbone maps' (h, w, channels), finest first (only the channels and the
      number of maps matter: they fix the parameters' shapes).
    prefix: ``""`` for a ``Mask2FormerPixelDecoder`` state dict,
      ``"model.pixel_level_module.decoder."`` inside a Mask2Former checkpoint.

  Returns:
    ``{"params": nested dict}``, float32.

  Raises:
    ValueError: a key under ``prefix`` of no parameter, a parameter missing, or a shape mismatch.
  """
  import jax  # pylint: disable=g-import-not-at-top

  features = [np.zeros((1, h, w, c), np.float32) for h, w, c in feature_shapes]
  expected = jax.eval_shape(
      lambda: pixel_decoder.PixelDecoder(settings).init(jax.random.key(0), features)
  )["params"]
  flat_expected = {
      tuple(k.key for k in path): leaf.shape
      for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]
  }
  params, unknown, shapes = {}, [], []
  for key, value in state_dict.items():
    if not key.startswith(prefix):
      continue
    path = _path(key[len(prefix) :])
    if path is None:
      unknown.append(key)
      continue
    array = np.asarray(value, np.float32)
    if array.ndim == 4:
      array = array.transpose(2, 3, 1, 0)
    elif array.ndim == 2 and path[-1] == "kernel":
      array = array.T
    if path in flat_expected and tuple(array.shape) != tuple(flat_expected[path]):
      shapes.append(f"{key} {array.shape} vs {tuple(flat_expected[path])}")
    params[path] = array
  missing = sorted("/".join(p) for p in set(flat_expected) - set(params))
  extra = sorted("/".join(p) for p in set(params) - set(flat_expected))
  if unknown or missing or extra or shapes:
    raise ValueError(
        f"pixel decoder state dict (prefix {prefix!r}) does not match {settings}: {len(unknown)} "
        f"keys of no parameter {unknown[:3]}, {len(missing)} parameters missing {missing[:3]}, "
        f"{len(extra)} beyond these settings {extra[:3]}, {len(shapes)} shape mismatches "
        f"{shapes[:3]}"
    )
  nested: dict = {}
  for path, array in params.items():
    node = nested
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = array
  return {"params": nested}
