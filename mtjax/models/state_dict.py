"""PyTorch state dicts -> Flax variables: the layout changes and the checks every converter of
``mtjax.models`` shares (Swin, the pixel decoder, the mask decoder, MT-CP).

A converter supplies ``to_path``, which names the Flax parameter of each (prefix-stripped) key;
``assemble`` reads the arrays, changes their layout (a linear weight [out, in] to a kernel [in,
out], a conv weight [out, in, kh, kw] to [kh, kw, in, out]; everything else as stored), and
checks them against the parameters the Flax module expects. A path ending in ``mean`` or ``var``
(``batchnorm_leaf`` of a ``running_mean`` / ``running_var`` key) is a BatchNorm statistic: it goes
to ``"batch_stats"``, everything else to ``"params"``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import numpy as np

from mtjax import fileio

__all__ = [
    "assemble",
    "batchnorm_leaf",
    "expected_shapes",
    "leaf_name",
    "load_variables",
    "match_rules",
    "read_state_dict",
    "save_variables",
]

Path = tuple[str, ...]
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".tar")


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch checkpoint as float32 / int64 NumPy arrays.

  ``.safetensors`` through ``safetensors.numpy``; ``.pth`` / ``.pt`` / ``.bin`` / ``.tar``
  (MT-CP's ``checkpoint.pth.tar``) through ``torch.load(weights_only=True)``, unwrapping a
  ``{"state_dict" | "model": ...}`` wrapper (other entries, e.g. an optimizer's state, are
  ignored) and a ``module.`` (DataParallel) prefix.

  Raises:
    FileNotFoundError: no such file. ImportError: torch is needed and missing (naming the extra).
    ValueError: an unknown suffix, or a file that is not a mapping of names to tensors.
  """
  path = fileio.as_path(path)
  if not path.is_file():
    raise FileNotFoundError(f"checkpoint {path} does not exist")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load  # pylint: disable=g-import-not-at-top

    return dict(load(path.read_bytes()))
  if path.suffix not in _TORCH_SUFFIXES:
    raise ValueError(f"checkpoint {path}: expected .safetensors or one of {_TORCH_SUFFIXES}")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'reading {path.suffix} checkpoints needs torch: pip install -e ".[convert]" (or convert '
        "a .safetensors file, which needs no torch)"
    ) from e
  state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
  for key in ("state_dict", "model"):
    if isinstance(state, dict) and isinstance(state.get(key), dict):
      state = state[key]
  if not isinstance(state, dict) or not all(hasattr(v, "numpy") for v in state.values()):
    raise ValueError(f"checkpoint {path} is not a state dict (names -> tensors)")
  out = {}
  for key, value in state.items():
    key = key[len("module.") :] if key.startswith("module.") else key
    out[key] = value.detach().cpu().float().numpy() if value.is_floating_point() else value.numpy()
  return out


def save_variables(variables: Mapping[str, Any], path: str | os.PathLike) -> None:
  """Writes converted ``variables`` as msgpack (``flax.serialization``), atomically."""
  fileio.write_atomic(path, flax.serialization.msgpack_serialize(jax.device_get(variables)))


def load_variables(path: str | os.PathLike) -> dict[str, Any]:
  """Reads ``save_variables``' file (nested dicts of NumPy arrays).

  Raises:
    FileNotFoundError: no such file (naming the converter). ValueError: not a msgpack file.
  """
  path = fileio.as_path(path)
  if not path.is_file():
    raise FileNotFoundError(
        f"pretrained weights {path} do not exist; make them with tools/convert_torch_weights.py"
    )
  try:
    return flax.serialization.msgpack_restore(path.read_bytes())
  except Exception as e:
    raise ValueError(f"{path} is not a msgpack file of converted variables ({e})") from e


def leaf_name(key: str, module_path: Path) -> Path:
  """``module_path`` + the Flax leaf of a PyTorch key ending in ``.weight`` / ``.bias``: a norm's
  weight (a module whose name contains ``norm``) is its ``scale``, any other weight a ``kernel``."""
  if key.endswith(".bias"):
    return (*module_path, "bias")
  return (*module_path, "scale" if "norm" in module_path[-1] else "kernel")


def batchnorm_leaf(key: str, module_path: Path) -> Path | None:
  """``module_path`` + the Flax leaf of a PyTorch BatchNorm key: ``weight`` -> ``scale``,
  ``bias`` -> ``bias``, ``running_mean`` / ``running_var`` -> the statistics ``mean`` / ``var``;
  ``None`` for ``num_batches_tracked`` (not read), ``()`` for anything else."""
  leaf = key.rsplit(".", 1)[-1]
  if leaf == "num_batches_tracked":
    return None
  names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
  return (*module_path, names[leaf]) if leaf in names else ()


def match_rules(key: str, rules) -> Path:
  """The Flax path of ``key`` by the first of ``rules`` ((regex, match -> module path) pairs)
  whose regex matches it in full (``leaf_name`` of that module), ``()`` when none does."""
  for pattern, module in rules:
    match = re.fullmatch(pattern, key)
    if match:
      return leaf_name(key, module(match))
  return ()


def shapes_of(tree: Mapping) -> dict[Path, tuple[int, ...]]:
  """{path: shape} of a nested dict of arrays or ``jax.ShapeDtypeStruct`` s."""
  return {
      tuple(k.key for k in path): tuple(leaf.shape)
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def expected_shapes(
    init: Callable[[], Any], collection: str = "params"
) -> dict[Path, tuple[int, ...]]:
  """{path: shape} of ``init()``'s ``collection`` (traced, not computed; {} if it has none)."""
  return shapes_of(jax.eval_shape(init).get(collection, {}))


def differing_paths(got: Mapping, expected: Mapping) -> list[str]:
  """Sorted "a/b/c" paths of the leaves that one nested dict has and the other lacks, or that
  both have with different shapes (empty: the same structure and shapes)."""
  got, expected = flax.traverse_util.flatten_dict(got), flax.traverse_util.flatten_dict(expected)
  return sorted(
      "/".join(k)
      for k in set(got) | set(expected)
      if k not in got or k not in expected or np.shape(got[k]) != np.shape(expected[k])
  )


def assemble(
    state_dict: Mapping[str, Any],
    prefix: str,
    to_path: Callable[[str], Path | None],
    expected: Mapping[Path, tuple[int, ...]],
    what: str,
    expected_stats: Mapping[Path, tuple[int, ...]] | None = None,
) -> dict:
  """``{"params": nested dict}`` (float32) from the keys of ``state_dict`` under ``prefix``, and
  ``"batch_stats"`` when ``expected_stats`` is given.

  Args:
    state_dict: name -> array (anything ``np.asarray`` takes, e.g. torch tensors).
    prefix: only keys starting with it are read, and it is stripped before ``to_path``.
    to_path: the Flax path of a key; ``None`` to skip it (buffers), ``()`` for a key that should
      map and does not.
    expected: ``expected_shapes`` of the module.
    what: the model's name, for the message.
    expected_stats: ``expected_shapes(init, "batch_stats")`` of a module with BatchNorms.

  Raises:
    ValueError: keys of no parameter, parameters missing or beyond ``expected``, or shapes that
      differ (a few of each named).
  """
  expected_stats = expected_stats or {}
  both = {("params", *p): v for p, v in expected.items()}
  both.update({("batch_stats", *p): v for p, v in expected_stats.items()})
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
    path = ("batch_stats" if path[-1] in ("mean", "var") else "params", *path)
    if path in both and tuple(array.shape) != tuple(both[path]):
      shapes.append(f"{key} {array.shape} vs {tuple(both[path])}")
    params[path] = array
  missing = sorted("/".join(p[1:]) for p in set(both) - set(params))
  extra = sorted("/".join(p[1:]) for p in set(params) - set(both))
  if unknown or missing or extra or shapes:
    raise ValueError(
        f"{what} state dict (prefix {prefix!r}): {len(unknown)} keys of no parameter "
        f"{unknown[:3]}, {len(missing)} parameters missing {missing[:3]}, {len(extra)} beyond the "
        f"model's {extra[:3]}, {len(shapes)} shape mismatches {shapes[:3]}"
    )
  nested: dict = {"params": {}}
  if expected_stats:
    nested["batch_stats"] = {}
  for path, array in params.items():
    node = nested
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = array
  return nested
