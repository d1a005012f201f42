"""ImageNet-pretrained HRNet weights from PyTorch checkpoints, into ``HRNetBackbone``'s variables.

Sources: timm's ``hrnet_w18`` / ``hrnet_w18_small_v2`` state dicts (``.pth``, ``.bin`` or
``.safetensors``) and HRNet-Image-Classification's ``hrnetv2_w18_imagenet_pretrained.pth``: both
name the backbone's modules alike (timm copied the original code). The classification head
(``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``) is not part of the
backbone and is skipped; every other key must map, and every backbone variable must be found, with
its shape: otherwise one error names the keys.

Mapping: a module path's dots become underscores (``HRNetBackbone`` names its layers so); conv
``weight`` [O, I, kh, kw] → ``kernel`` [kh, kw, I, O]; BatchNorm ``weight`` / ``bias`` → params
``scale`` / ``bias``, ``running_mean`` / ``running_var`` → batch_stats ``mean`` / ``var``;
``num_batches_tracked`` is dropped. Output: msgpack (``flax.serialization``) of
``{"params": ..., "batch_stats": ...}``, float32. ``.safetensors`` is read with the
``safetensors`` package (no torch); ``.pth`` / ``.bin`` need torch (``pip install -e ".[convert]"``).
"""

from __future__ import annotations

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.models import state_dict as state_dict_lib
from mtjax.models.hrnet import VARIANTS, HRNetBackbone

HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
# Shared with the other converters (mtjax.models.state_dict).
read_state_dict = state_dict_lib.read_state_dict
save = state_dict_lib.save_variables


def expected_variables(variant: str) -> dict[str, Any]:
  """Shapes of ``HRNetBackbone(variant)``'s variables (``jax.ShapeDtypeStruct`` leaves)."""
  model = HRNetBackbone(variant)
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  )


def convert_state_dict(state: dict[str, np.ndarray], variant: str) -> dict[str, Any]:
  """A PyTorch HRNet state dict → ``{"params", "batch_stats"}`` of ``HRNetBackbone(variant)``.

  Raises:
    ValueError: an unknown variant; keys that do not map, backbone variables the checkpoint lacks,
      or shape mismatches — one error listing (up to 5 of) each.
  """
  if variant not in VARIANTS:
    raise ValueError(f"HRNet variant {variant!r}: expected one of {tuple(VARIANTS)}")
  expected = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected_variables(variant)))
  found: dict[tuple[str, ...], np.ndarray] = {}
  unmapped, mismatched, seen = [], [], set()
  for key, value in state.items():
    if key.endswith("num_batches_tracked") or key.startswith(HEAD_PREFIXES):
      continue
    module, _, leaf = key.rpartition(".")
    name = module.replace(".", "_")
    value = np.asarray(value, np.float32)
    if leaf == "weight" and value.ndim == 4:
      target, value = ("params", name, "kernel"), value.transpose(2, 3, 1, 0)
    else:
      collection, new_leaf = {
          "weight": ("params", "scale"),
          "bias": ("params", "bias"),
          "running_mean": ("batch_stats", "mean"),
          "running_var": ("batch_stats", "var"),
      }.get(leaf, (None, None))
      target = (collection, name, new_leaf)
    if target not in expected:
      unmapped.append(key)
    elif tuple(expected[target].shape) != value.shape:
      mismatched.append(f"{key} {value.shape} vs {tuple(expected[target].shape)}")
      seen.add(target)
    else:
      found[target] = value
  missing = ["/".join(k) for k in expected if k not in found and k not in seen]
  if unmapped or missing or mismatched:
    raise ValueError(
        f"the checkpoint is not an {variant} backbone: {len(unmapped)} keys that do not map "
        f"{unmapped[:5]}, {len(missing)} variables missing {missing[:5]}, {len(mismatched)} shape "
        f"mismatches (checkpoint vs model) {mismatched[:5]}"
    )
  return flax.traverse_util.unflatten_dict(found)


def load(path: str | os.PathLike, variant: str) -> dict[str, Any]:
  """Reads ``save``'s file and checks it against ``HRNetBackbone(variant)``'s variables.

  Raises:
    FileNotFoundError: no such file. ValueError: not such a file, or another structure / shapes.
  """
  variables = state_dict_lib.load_variables(path)
  wrong = state_dict_lib.differing_paths(variables, flax.core.unfreeze(expected_variables(variant)))
  if wrong:
    raise ValueError(f"{path} does not hold {variant} backbone variables: {wrong[:5]} differ")
  return variables
