"""PyTorch state dicts -> Flax variables: the layout changes and the checks every converter of
``mtjax.models`` shares (Swin, the pixel decoder, the mask decoder, MT-CP).

A converter supplies ``to_path``, which names the Flax parameter of each (prefix-stripped) key;
``assemble`` reads the arrays, changes their layout (a linear weight [out, in] to a kernel [in,
out], a conv weight [out, in, kh, kw] to [kh, kw, in, out]; everything else as stored), and
checks them against the parameters the Flax module expects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["assemble", "expected_shapes", "leaf_name", "match_rules"]

Path = tuple[str, ...]


def leaf_name(key: str, module_path: Path) -> Path:
  """``module_path`` + the Flax leaf of a PyTorch key ending in ``.weight`` / ``.bias``: a norm's
  weight (a module whose name contains ``norm``) is its ``scale``, any other weight a ``kernel``."""
  if key.endswith(".bias"):
    return (*module_path, "bias")
  return (*module_path, "scale" if "norm" in module_path[-1] else "kernel")


def match_rules(key: str, rules) -> Path:
  """The Flax path of ``key`` by the first of ``rules`` ((regex, match -> module path) pairs)
  whose regex matches it in full (``leaf_name`` of that module), ``()`` when none does."""
  for pattern, module in rules:
    match = re.fullmatch(pattern, key)
    if match:
      return leaf_name(key, module(match))
  return ()


def expected_shapes(init: Callable[[], Any]) -> dict[Path, tuple[int, ...]]:
  """{parameter path: shape} of ``init()``'s ``"params"`` (traced, not computed)."""
  params = jax.eval_shape(init)["params"]
  return {
      tuple(k.key for k in path): tuple(leaf.shape)
      for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
  }


def assemble(
    state_dict: Mapping[str, Any],
    prefix: str,
    to_path: Callable[[str], Path | None],
    expected: Mapping[Path, tuple[int, ...]],
    what: str,
) -> dict:
  """``{"params": nested dict}`` (float32) from the keys of ``state_dict`` under ``prefix``.

  Args:
    state_dict: name -> array (anything ``np.asarray`` takes, e.g. torch tensors).
    prefix: only keys starting with it are read, and it is stripped before ``to_path``.
    to_path: the Flax path of a key; ``None`` to skip it (buffers), ``()`` for a key that should
      map and does not.
    expected: ``expected_shapes`` of the module.
    what: the model's name, for the message.

  Raises:
    ValueError: keys of no parameter, parameters missing or beyond ``expected``, or shapes that
      differ (a few of each named).
  """
  params: dict[Path, np.ndarray] = {}
  unknown, shapes = [], []
  for key, value in state_dict.items():
    if not key.startswith(prefix):
      continue
    path = to_path(key[len(prefix) :])
    if path is None:
      continue
    if not path:
      unknown.append(key)
      continue
    array = np.asarray(value, np.float32)
    if array.ndim == 4:
      array = array.transpose(2, 3, 1, 0)
    elif array.ndim == 2 and path[-1].endswith("kernel"):
      array = array.T
    if path in expected and tuple(array.shape) != tuple(expected[path]):
      shapes.append(f"{key} {array.shape} vs {tuple(expected[path])}")
    params[path] = array
  missing = sorted("/".join(p) for p in set(expected) - set(params))
  extra = sorted("/".join(p) for p in set(params) - set(expected))
  if unknown or missing or extra or shapes:
    raise ValueError(
        f"{what} state dict (prefix {prefix!r}): {len(unknown)} keys of no parameter "
        f"{unknown[:3]}, {len(missing)} parameters missing {missing[:3]}, {len(extra)} beyond the "
        f"model's {extra[:3]}, {len(shapes)} shape mismatches {shapes[:3]}"
    )
  nested: dict = {}
  for path, array in params.items():
    node = nested
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = array
  return {"params": nested}
