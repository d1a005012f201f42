"""Hugging Face Swin weights -> ``mtjax.models.swin.SwinBackbone`` variables, by name.

Reads the state dict of ``transformers``' ``SwinBackbone`` / ``SwinModel`` (or the Swin inside a
Mask2Former checkpoint, under a ``prefix``) in either naming: today's (``attention.q_proj``,
``mlp.fc1``) or the one of the checkpoints published before transformers 5
(``attention.self.query``, ``attention.output.dense``, ``intermediate.dense``, ``output.dense``).
Layouts change as ``mtjax.models.state_dict`` says; the ``relative_position_index`` buffers are
recomputed, not read, and ``SwinModel``'s final LayerNorm, which a backbone never applies, is
skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import numpy as np

from mtjax.models import state_dict as state_dict_lib
from mtjax.models import swin

__all__ = ["convert_state_dict", "flax_path"]

# Names of checkpoints written before transformers 5 -> today's.
_LEGACY = (
    ("attention.self.query.", "attention.q_proj."),
    ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    (
        "attention.self.relative_position_bias_table",
        "attention.relative_position_bias.relative_position_bias_table",
    ),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
)

_BLOCK = r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_RULES = (
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", lambda m: ("patch_embeddings",)),
    (r"embeddings\.norm\.(weight|bias)", lambda m: ("embeddings_norm",)),
    (_BLOCK + r"attention\.([qkvo]_proj)\.(weight|bias)", lambda m: (f"layers_{m[1]}_blocks_{m[2]}", "attention", m[3])),
    (_BLOCK + r"(layernorm_before|layernorm_after)\.(weight|bias)", lambda m: (f"layers_{m[1]}_blocks_{m[2]}", m[3])),
    (_BLOCK + r"mlp\.(fc1|fc2)\.(weight|bias)", lambda m: (f"layers_{m[1]}_blocks_{m[2]}", m[3])),
    (r"encoder\.layers\.(\d+)\.downsample\.(norm|reduction)\.(weight|bias)", lambda m: (f"layers_{m[1]}_downsample", m[2])),
    (r"hidden_states_norms\.stage(\d+)\.(weight|bias)", lambda m: (f"hidden_states_norms_stage{m[1]}",)),
)  # fmt: skip


def flax_path(key: str) -> tuple[str, ...] | None:
  """The Flax parameter path of a Swin state-dict key (prefix removed; either naming), ``None``
  for what is not read, ``()`` for a key that is no Swin parameter."""
  key = key[len("swin.") :] if key.startswith("swin.") else key  # transformers 5 nests SwinModel.
  for old, new in _LEGACY:
    key = key.replace(old, new)
  if key.endswith("relative_position_index") or re.fullmatch(r"layernorm\.(weight|bias)", key):
    return None
  table = re.fullmatch(
      _BLOCK + r"attention\.relative_position_bias\.relative_position_bias_table", key
  )
  if table:
    block = f"layers_{table[1]}_blocks_{table[2]}"
    return (block, "attention", "relative_position_bias", "relative_position_bias_table")
  return state_dict_lib.match_rules(key, _RULES)


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    settings: swin.SwinSettings,
    *,
    prefix: str = "",
    patch_embedding: bool = True,
) -> dict:
  """Flax ``{"params": ...}`` of ``SwinBackbone(settings)`` from a Hugging Face state dict.

  Args:
    state_dict: name -> array; keys outside ``prefix`` are ignored.
    settings: the Swin's sizes; every parameter they imply must be present with its shape.
    prefix: the backbone's prefix: ``""`` for a ``SwinBackbone`` state dict,
      ``"model.pixel_level_module.encoder."`` inside a Mask2Former checkpoint. A ``swin.`` after it
      (transformers 5 nests ``SwinModel`` there) is optional.
    patch_embedding: as ``SwinBackbone``'s (False: no embedding parameters are expected).

  Returns:
    ``{"params": nested dict}``, float32.

  Raises:
    ValueError: a key under ``prefix`` of no Swin parameter, a parameter missing, or a shape that
      differs from ``settings``' (each named, a few of each).
  """
  channels = 3 if patch_embedding else settings.embed_dim
  images = np.zeros((1, 32, 32, channels), np.float32)
  model = swin.SwinBackbone(settings, patch_embedding=patch_embedding)
  expected = state_dict_lib.expected_shapes(lambda: model.init(jax.random.key(0), images))
  return state_dict_lib.assemble(state_dict, prefix, flax_path, expected, f"Swin {settings}")
