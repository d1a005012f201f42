"""Hugging Face Swin weights -> ``mtjax.models.swin.SwinBackbone`` variables, by name.

Reads the state dict of ``transformers``' ``SwinBackbone`` / ``SwinModel`` (or the Swin inside a
Mask2Former checkpoint, under a ``prefix``) in either naming: today's (``attention.q_proj``,
``mlp.fc1``) or the one of the checkpoints published before transformers 5
(``attention.self.query``, ``attention.output.dense``, ``intermediate.dense``, ``output.dense``).
PyTorch's linear weights [out, in] become Flax kernels [in, out]; the patch-embedding conv
[out, in, kh, kw] becomes [kh, kw, in, out]; LayerNorm weight becomes scale. The
``relative_position_index`` buffers are recomputed, not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from mtjax.models import swin

__all__ = ["convert_state_dict", "flax_name"]

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


def flax_name(key: str) -> tuple[str, ...] | None:
  """The Flax parameter path of a (today's naming, prefix removed) Swin state-dict key, or None
  for a key with no parameter (buffers)."""
  if key.endswith("relative_position_index") or re.fullmatch(r"layernorm\.(weight|bias)", key):
    return None  # A buffer; SwinModel's final LayerNorm, which a backbone never applies.
  leaf = {"weight": "kernel", "bias": "bias"}
  rules = (
      (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", lambda m: ("patch_embeddings",)),
      (r"embeddings\.norm\.(weight|bias)", lambda m: ("embeddings_norm",)),
      (
          r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias\."
          r"relative_position_bias_table",
          lambda m: (f"layers_{m[1]}_blocks_{m[2]}", "attention", "relative_position_bias"),
      ),
      (
          r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.([qkvo]_proj)\.(weight|bias)",
          lambda m: (f"layers_{m[1]}_blocks_{m[2]}", "attention", m[3]),
      ),
      (
          r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(layernorm_before|layernorm_after)\.(weight|bias)",
          lambda m: (f"layers_{m[1]}_blocks_{m[2]}", m[3]),
      ),
      (
          r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)",
          lambda m: (f"layers_{m[1]}_blocks_{m[2]}", m[3]),
      ),
      (
          r"encoder\.layers\.(\d+)\.downsample\.(norm|reduction)\.(weight|bias)",
          lambda m: (f"layers_{m[1]}_downsample", m[2]),
      ),
      (
          r"hidden_states_norms\.stage(\d+)\.(weight|bias)",
          lambda m: (f"hidden_states_norms_stage{m[1]}",),
      ),
  )
  for pattern, path in rules:
    match = re.fullmatch(pattern, key)
    if match:
      if key.endswith("relative_position_bias_table"):
        return (*path(match), "relative_position_bias_table")
      name = leaf[key.rsplit(".", 1)[1]]
      is_norm = "norm" in path(match)[-1] or "layernorm" in path(match)[-1]
      return (*path(match), "scale" if is_norm and name == "kernel" else name)
  return ()  # Not a Swin parameter.


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], settings: swin.SwinSettings, *, prefix: str = ""
) -> dict:
  """Flax ``{"params": ...}`` of ``SwinBackbone(settings)`` from a Hugging Face state dict.

  Args:
    state_dict: name -> array (torch tensors are converted with ``np.asarray``); keys outside
      ``prefix`` are ignored.
    settings: the Swin's sizes; every parameter they imply must be present with its shape.
    prefix: the backbone's prefix: ``""`` for a ``SwinBackbone`` state dict,
      ``"model.pixel_level_module.encoder."`` inside a Mask2Former checkpoint. A ``swin.`` after it
      (transformers 5 nests ``SwinModel`` there) is optional.

  Returns:
    ``{"params": nested dict}``, float32.

  Raises:
    ValueError: a key under ``prefix`` that maps to no Swin parameter, a parameter missing, or
      a shape that differs from ``settings``' (each named, a few of each).
  """
  import jax  # pylint: disable=g-import-not-at-top

  expected = jax.eval_shape(
      lambda: swin.SwinBackbone(settings).init(
          jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)
      )
  )["params"]
  flat_expected = {
      tuple(k.key for k in path): leaf.shape
      for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]
  }
  params, unknown, shapes = {}, [], []
  for key, value in state_dict.items():
    if not key.startswith(prefix):
      continue
    name = key[len(prefix) :]
    name = name[len("swin.") :] if name.startswith("swin.") else name  # transformers 5's nesting.
    for old, new in _LEGACY:
      name = name.replace(old, new)
    path = flax_name(name)
    if path is None:
      continue
    if not path:
      unknown.append(key)
      continue
    array = np.asarray(value, np.float32)
    if array.ndim == 4:  # Conv [out, in, kh, kw] -> [kh, kw, in, out].
      array = array.transpose(2, 3, 1, 0)
    elif array.ndim == 2 and path[-1] == "kernel":  # Linear [out, in] -> [in, out].
      array = array.T
    if path in flat_expected and tuple(array.shape) != tuple(flat_expected[path]):
      shapes.append(f"{key} {array.shape} vs {tuple(flat_expected[path])}")
    params[path] = array
  missing = sorted("/".join(p) for p in set(flat_expected) - set(params))
  extra = sorted("/".join(p) for p in set(params) - set(flat_expected))
  if unknown or missing or extra or shapes:
    raise ValueError(
        f"Swin state dict (prefix {prefix!r}) does not match {settings}: {len(unknown)} keys of no "
        f"Swin parameter {unknown[:3]}, {len(missing)} parameters missing {missing[:3]}, "
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
