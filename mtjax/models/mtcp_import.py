"""A released MT-CP checkpoint -> ``mtjax.models.mtcp.MTCP`` variables, by name.

Reads the state dict of Klodivio355/MT-CP's ``MultiTaskModel_NYUD`` (``models/models_nyud_CL.py``)
or ``MultiTaskModel_PASCAL`` (``models/models_pascal_CL.py``), as its training script saves it
(``{"model": state_dict, ...}``; ``hrnet_import.read_state_dict`` unwraps it). The released
modules are named by the task's position (``transformer1``, ``gaaf2``, ``trace_back3``,
``sem_pred_layers`` / ``depth_pred_layers`` / ``normals_pred_layers``) or by the dataset's task
names (``fpn_*``, ``project_*``: ``RELEASED_NAMES``); MTCP's task ``k`` takes position ``k``. The
parts map as:

* ``backbon.`` (the Mask2Former trunk) -> ``trunk`` (``mask2former_import``);
* ``transformer{k}.`` (the original Swin's names: ``attn.qkv`` split into q, k, v; ``norm1`` /
  ``norm2``; ``norm{i}`` the stage outputs' LayerNorms) -> ``swin_<task>`` (``swin_import``);
* ``fpn_*``, ``gaaf*``, ``trace_back*``, the prediction layers and ``project_*`` -> the
  ``fpn_fusion``, ``coherence_fusion``, ``trace_back`` and head modules, BatchNorm statistics to
  ``"batch_stats"``.

What the released forward never uses (``mtcp.UNUSED_IN_RELEASED_FORWARD``) is skipped: the Swin-S
``backbone.``, the decoders' ``patch_embed``, ``fpn_convs`` beyond the first, ``gaaf*.conv2`` /
``conv3``, ``spf_modules.3`` (the same module as ``spf_modules.2``), the scalars, and the
trunk's loss buffer. Anything else that does not map is an error naming the keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import jax
import numpy as np

from mtjax.models import mask2former_import, mtcp, segnet, swin_import
from mtjax.models import state_dict as state_dict_lib

__all__ = [
    "PRED_LAYER_NAMES",
    "RELEASED_NAMES",
    "SUFFIXES",
    "convert_state_dict",
    "flax_path",
    "split_qkv",
    "with_pretrained",
]

# The per-task module names by the task's position, per released model file.
RELEASED_NAMES = {
    "nyud": {
        "fpn": ("fpn_semseg", "fpn_depth", "fpn_normal"),
        "project": ("project_semseg", "project_depth", "project_normals"),
    },
    "pascal": {
        "fpn": ("fpn_semseg", "fpn_human", "fpn_normal"),
        "project": ("project_semseg", "project_human", "project_sal"),
    },
}
PRED_LAYER_NAMES = ("sem_pred_layers", "depth_pred_layers", "normals_pred_layers")
SUFFIXES = ("", "2", "3")  # transformer1 / gaaf / trace_back, transformer2 / gaaf2 / ...
_SKIPPED = re.compile(
    r"backbone\..*|log_var_list|skip_gate|lambda_param|alpha_param|backbon\.criterion\..*"
    r"|transformer\d\.patch_embed\..*|fpn_\w+\.fpn_convs\.[1-9]\d*\..*|gaaf\d?\.conv[23]\..*"
    r"|trace_back\d?\.spf_modules\.3\..*|.*relative_position_index"
)
# Original Swin names -> the Hugging Face names swin_import reads.
_SWIN = (
    (r"layers\.(\d+)\.blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.blocks.\2.layernorm_before."),
    (r"layers\.(\d+)\.blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.blocks.\2.layernorm_after."),
    (r"layers\.(\d+)\.blocks\.(\d+)\.attn\.([qkv])\.", r"encoder.layers.\1.blocks.\2.attention.\3_proj."),
    (r"layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.blocks.\2.attention.o_proj."),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
        r"encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table",
    ),
    (r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.blocks.\2.mlp."),
    (r"layers\.(\d+)\.downsample\.", r"encoder.layers.\1.downsample."),
)  # fmt: skip


def split_qkv(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """``state_dict`` with each original-Swin ``….attn.qkv.{weight,bias}`` ([3C, C] / [3C], rows
  q, k, v) replaced by ``….attn.{q,k,v}.{weight,bias}``."""
  out = {}
  for key, value in state_dict.items():
    match = re.fullmatch(r"(.*\.attn\.)qkv\.(weight|bias)", key)
    if not match:
      out[key] = value
      continue
    for name, part in zip("qkv", np.split(np.asarray(value), 3, axis=0)):
      out[f"{match[1]}{name}.{match[2]}"] = part
  return out


def _swin_path(key: str) -> tuple[str, ...] | None:
  norm = re.fullmatch(r"norm(\d+)\.(weight|bias)", key)
  if norm:
    return (
        f"hidden_states_norms_stage{int(norm[1]) + 1}",
        "scale" if norm[2] == "weight" else "bias",
    )
  for pattern, replacement in _SWIN:
    if re.match(pattern, key):
      return swin_import.flax_path(re.sub(pattern, replacement, key, count=1))
  return ()


def _cbam_path(key: str, module: tuple[str, ...]) -> tuple[str, ...]:
  """A CBAM's key (``ChannelGate.mlp.{1,3}``, ``SpatialGate.spatial.{conv,bn}``)."""
  rules = {
      r"ChannelGate\.mlp\.1\.(weight|bias)": (*module, "mlp_0"),
      r"ChannelGate\.mlp\.3\.(weight|bias)": (*module, "mlp_1"),
      r"SpatialGate\.spatial\.conv\.weight": (*module, "spatial_conv"),
  }
  for pattern, path in rules.items():
    if re.fullmatch(pattern, key):
      return state_dict_lib.leaf_name(key, path)
  if key.startswith("SpatialGate.spatial.bn."):
    return state_dict_lib.batchnorm_leaf(key, (*module, "spatial_bn"))
  return ()


def _head_path(rest: str, module: str, regression: bool) -> tuple[str, ...] | None:
  """``project_*.<index>.<leaf>``: the final head's layers by their Sequential index."""
  index, _, leaf = rest.partition(".")
  layers = (
      {"0": "conv_0", "2": "conv_1", "4": "conv_2"}
      if regression
      else {"0": "conv_0", "3": "conv_1"}
  )
  if not regression and index == "1":
    return state_dict_lib.batchnorm_leaf(rest, (module, "bn"))
  if index in layers and leaf in ("weight", "bias"):
    return state_dict_lib.leaf_name(rest, (module, layers[index]))
  return ()


def flax_path(
    key: str, tasks: tuple[str, ...], naming: str, regression: tuple[str, ...]
) -> tuple[str, ...] | None:
  """MTCP's Flax path of a released key (``"mean"`` / ``"var"`` leaves are BatchNorm
  statistics), ``None`` for what is not read, ``()`` for a key of no parameter.

  Args:
    key: a key of the released state dict (``module.`` removed), its qkv already split
      (``split_qkv``).
    tasks: MTCP's task names, in the released order.
    naming: "nyud" | "pascal" (``RELEASED_NAMES``).
    regression: the tasks whose final head has the released depth head's structure.
  """
  if _SKIPPED.fullmatch(key):
    return None
  if key.startswith("backbon."):
    rest = key[len("backbon.") :]
    rest = rest[len("model.") :] if rest.startswith("model.") else rest
    path = mask2former_import.flax_path(rest)
    return path if not path else ("trunk", *path)
  names = RELEASED_NAMES[naming]
  for k, task in enumerate(tasks):
    prefixes = {
        f"transformer{k + 1}.": "swin",
        f"{names['fpn'][k]}.": "fpn",
        f"gaaf{SUFFIXES[k]}.": "cfm",
        f"trace_back{SUFFIXES[k]}.": "trace_back",
        f"{PRED_LAYER_NAMES[k]}.": "pred",
        f"{names['project'][k]}.": "project",
    }
    for prefix, part in prefixes.items():
      if not key.startswith(prefix):
        continue
      rest = key[len(prefix) :]
      if part == "swin":
        path = _swin_path(rest)
        return path if not path else (f"swin_{task}", *path)
      if part == "fpn":
        match = re.fullmatch(r"(lateral_convs|fpn_convs)\.(\d+)\.(weight|bias)", rest)
        return (
            state_dict_lib.leaf_name(rest, (f"fpn_{task}", f"{match[1]}_{match[2]}"))
            if match
            else ()
        )
      if part == "cfm":
        return _module_path(rest, (f"cfm_{task}",), convs=("gate1", "gate2", "conv1"))
      if part == "trace_back":
        match = re.fullmatch(r"spf_modules\.(\d+)\.(.*)", rest)
        if not match:
          return ()
        return _module_path(
            match[2],
            (f"trace_back_{task}", f"spf_modules_{match[1]}"),
            convs=("sem_conv", "dep_conv"),
        )
      if part == "pred":
        match = re.fullmatch(r"(\d+)\.module\.(\d+)\.(.*)", rest)
        if not match:
          return ()
        module = f"intermediate_{task}_{match[1]}"
        if match[2] == "2":
          return state_dict_lib.batchnorm_leaf(match[3], (module, "bn"))
        layer = {"0": "conv_0", "1": "conv_1", "4": "conv_2"}.get(match[2])
        return state_dict_lib.leaf_name(rest, (module, layer)) if layer else ()
      return _head_path(rest, f"head_{task}", task in regression)
  return ()


def _module_path(rest: str, module: tuple[str, ...], convs: tuple[str, ...]) -> tuple[str, ...]:
  """A key inside a Coherence Fusion or an SRM: its CBAMs, BatchNorms and 1x1 convs."""
  name, _, leaf = rest.partition(".")
  if name in convs:
    return state_dict_lib.leaf_name(rest, (*module, name))
  if name.endswith("_norm") or name in ("b1", "b2"):
    return state_dict_lib.batchnorm_leaf(rest, (*module, name))
  if name in ("cbam_sem", "cbam_dep", "cbam_dep2", "shared_dep2", "sem_cbam", "dep_cbam"):
    return _cbam_path(leaf, (*module, name))
  return ()


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], model: mtcp.MTCP, naming: str = "nyud"
) -> dict:
  """``{"params", "batch_stats"}`` of ``model`` from a released MT-CP state dict.

  Args:
    state_dict: name -> array (``module.`` removed), e.g. ``hrnet_import.read_state_dict`` of
      the released ``checkpoint.pth.tar`` or ``best_model.pth.tar``.
    model: the MTCP to fill: 3 tasks in the released order (NYUD: semseg, depth, normal;
      PASCAL: semseg, human_parts, saliency) and the released sizes.
    naming: "nyud" (``MultiTaskModel_NYUD``) or "pascal" (``MultiTaskModel_PASCAL``).

  Raises:
    ValueError: an unknown ``naming``, a model without 3 tasks, keys of no parameter, parameters
      missing, shapes that differ (a few of each named).
  """
  if naming not in RELEASED_NAMES:
    raise ValueError(f"naming={naming!r}: expected one of {sorted(RELEASED_NAMES)}")
  tasks = tuple(t.name for t in segnet.head_tasks("MTCP", model.tasks, model.num_classes))
  if len(tasks) != 3:
    raise ValueError(f"the released MT-CP has 3 tasks; this MTCP has {tasks}")
  images = np.zeros((1, 64, 64, 3), np.float32)
  traced = jax.eval_shape(model.init, jax.random.key(0), images)  # Both collections, one trace.
  regression = tuple(model.settings.regression_heads)
  return state_dict_lib.assemble(
      split_qkv(state_dict),
      "",
      lambda key: flax_path(key, tasks, naming, regression),
      state_dict_lib.shapes_of(traced["params"]),
      f"MT-CP ({naming})",
      state_dict_lib.shapes_of(traced.get("batch_stats", {})),
  )


def with_pretrained(
    path: str | os.PathLike, params: Mapping, batch_stats: Mapping
) -> tuple[dict, dict]:
  """(params, batch_stats) of an MTCP with ``path``'s converted weights in place
  (``tools/convert_torch_weights.py``): a whole released model (``--variant mtcp_nyud`` /
  ``mtcp_pascal``: every variable replaced) or a Mask2Former trunk (``--variant mask2former``:
  ``params["trunk"]`` replaced, the rest kept as initialised).

  Raises:
    FileNotFoundError: no such file. ValueError: the file holds neither this model's variables
      nor its trunk's (the first differing names of both comparisons given).
  """
  variables = state_dict_lib.load_variables(path)
  whole = {"params": params, "batch_stats": batch_stats}
  vs_whole = state_dict_lib.differing_paths(variables, whole)
  if not vs_whole:
    return dict(variables["params"]), dict(variables["batch_stats"])
  vs_trunk = state_dict_lib.differing_paths(variables, {"params": params["trunk"]})
  if not vs_trunk:
    return {**params, "trunk": variables["params"]}, dict(batch_stats)
  raise ValueError(
      f"{path} holds neither this MT-CP's variables ({len(vs_whole)} differ: {vs_whole[:3]}) nor "
      f"its trunk's ({len(vs_trunk)} differ: {vs_trunk[:3]}); convert a checkpoint of the "
      "same sizes (config.model.mtcp) with tools/convert_torch_weights.py"
  )
