"""MT-CP's multi-task model (Fontana et al., WACV 2025), as its released forward runs
(Klodivio355/MT-CP ``models/models_nyud_CL.py`` ``MultiTaskModel_NYUD.forward``, and
``models_pascal_CL.py`` for PASCAL-Context's heads):

1. **trunk**: Mask2Former (``mtjax.models.mask2former``); the shared map is the pixel decoder's
   stride-4 mask features scaled by the sum over queries of the last layer's mask logits
   (``query_weighted_features``), ``width`` = 256 channels;
2. **per task**: a Swin on that map as tokens (no patch embedding; depths (1, 2, 1), 2 heads,
   window 7: stage maps of 256, 512, 1024 channels at strides 4, 8, 16), fused top-down into one
   stride-4 map (``fpn_fusion.PyramidFusion``);
3. **Coherence Fusion** (``coherence_fusion``): each task's fused map refined by the others';
4. **Trace-Back** (``trace_back``): back through the task's Swin stages, coarsest first; its
   outputs at strides 16 and 8 feed the deep-supervision heads (conv1x1 → conv1x1 → BN → ReLU →
   conv1x1, no biases before the last), the stride-4 one the final head;
5. **final heads**, per task as released: conv1x1 → BN → ReLU → conv1x1, then an
   ``align_corners=True`` bilinear upsampling by ``head_upsample[task]`` (NYUD: semseg 2, normals
   1; PASCAL: semseg 4, human parts 4, saliency 1), except depth's conv1x1 (128) → upsampling 2 →
   conv1x1 (32) → ReLU → conv1x1; every prediction then resized bilinearly to the input size and
   passed through the task record's activation (``mtjax.tasks``).

Built by the released model and never used by its forward, so not built here (reported by
``UNUSED_IN_RELEASED_FORWARD``): the Swin-S backbone of ``get_backbone`` (``self.backbone``), the
decoders' patch embeddings, the pyramid's coarser 3x3 convs, the Coherence Fusion's ``conv2`` and
``conv3``, the Trace-Back's fourth SRM (the third again), the class predictor's softmax (computed,
unread), and the scalars ``log_var_list``, ``skip_gate``, ``lambda_param``, ``alpha_param``.

Returns ``{task: prediction}`` and, under ``"deep_supervision"``, two such dicts (strides 16 and
8), each weighted ``deep_supervision_weight`` = ½ as the released training loop adds them
(``traine/train_utils.py`` ``train_nyud``: Σ intermediate losses / 2 per task).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtjax.models import (
    coherence_fusion,
    fpn_fusion,
    hrnet,
    layers,
    mask2former,
    segnet,
    swin,
    trace_back,
)
from mtjax.tasks import Task

__all__ = [
    "MTCP",
    "MTCPSettings",
    "UNUSED_IN_RELEASED_FORWARD",
    "resize_bilinear_aligned",
    "settings_from_config",
]

UNUSED_IN_RELEASED_FORWARD = (
    "self.backbone (the Swin-S of get_backbone)",
    "transformer{1,2,3}.patch_embed (forward2 skips it)",
    "fpn_*.fpn_convs[1:] (applied, output discarded)",
    "gaaf*.conv2, gaaf*.conv3",
    "trace_back*.spf_modules[3] (the same module as [2], never run)",
    "backbon.class_predictor softmax (computed, unread)",
    "log_var_list, skip_gate, lambda_param, alpha_param",
)


@dataclasses.dataclass(frozen=True)
class MTCPSettings:
  """MT-CP's sizes; the defaults are the released NYUD-MT model's."""

  trunk: mask2former.Mask2FormerSettings = mask2former.Mask2FormerSettings()
  width: int = 256
  decoder: swin.SwinSettings = swin.SwinSettings(
      embed_dim=256, depths=(1, 2, 1), num_heads=(2, 2, 2), window_size=7
  )
  head_upsample: tuple[tuple[str, int], ...] = (("semseg", 2), ("depth", 2), ("normal", 1))
  # The heads built as the released depth head (conv, upsampling, conv, ReLU, conv): a setting of
  # the released model, which gives that structure to these heads by name.
  regression_heads: tuple[str, ...] = ("depth",)
  deep_supervision_weight: float = 0.5
  # The Coherence Fusion's affinity: "dot" (released) | "cosine" (coherence_fusion's docstring).
  cfm_affinity: str = "dot"
  # Rows of the Coherence Fusion's HW x HW affinity computed at a time, rematerialised in the
  # backward pass (coherence_fusion.affinity_mix); 0: the whole matrix, as released.
  cfm_chunk: int = 0
  # Rematerialise in the backward pass (``nn.remat``) the trunk, each task's decoder and pyramid,
  # Coherence Fusion and Trace-Back, and within them every Swin block and deformable encoder
  # layer (``MTCP`` sets the trunk's and decoders' ``remat`` with it): only their
  # inputs and outputs are kept from the forward pass, their insides recomputed for the gradient.
  # Values and gradients are the same; memory lower, compute higher. False: everything kept, as
  # PyTorch's autograd does in the released training.
  remat: bool = False


def settings_from_config(options) -> MTCPSettings:
  """``MTCPSettings`` from ``config.model.mtcp`` (a ConfigDict or dict of the fields below; absent
  ones take the released model's values): ``swin_embed_dim``, ``swin_depths``,
  ``swin_num_heads``, ``swin_window_size``, ``feature_size``, ``mask_feature_size``,
  ``encoder_layers``, ``encoder_feedforward_dim``, ``num_attention_heads`` (the pixel decoder's
  and the transformer decoder's, one field as in ``transformers.Mask2FormerConfig``),
  ``hidden_dim``, ``num_queries``, ``decoder_layers``, ``dim_feedforward``, ``num_labels``,
  ``width``, ``decoder_depths``, ``decoder_num_heads``, ``head_upsample`` ({task: factor}),
  ``deep_supervision_weight``, ``cfm_affinity`` ("dot" as released | "cosine":
  ``coherence_fusion``), ``cfm_chunk`` (rows of the affinity at a time; 0: all), ``remat``
  (``MTCPSettings.remat``).

  Raises:
    ValueError: an unknown field.
  """
  o = dict(options or {})
  fields = {
      "swin_embed_dim", "swin_depths", "swin_num_heads", "swin_window_size", "feature_size",
      "mask_feature_size", "encoder_layers", "encoder_feedforward_dim", "num_attention_heads",
      "hidden_dim", "num_queries", "decoder_layers", "dim_feedforward", "num_labels", "width",
      "decoder_depths", "decoder_num_heads", "head_upsample", "deep_supervision_weight",
      "cfm_affinity", "cfm_chunk", "remat",
  }  # fmt: skip
  unknown = sorted(set(o) - fields)
  if unknown:
    raise ValueError(
        f"config.model.mtcp has unknown fields {unknown}; expected some of {sorted(fields)}"
    )
  d = MTCPSettings()
  t = d.trunk
  trunk = mask2former.Mask2FormerSettings(
      backbone=dataclasses.replace(
          t.backbone,
          embed_dim=o.get("swin_embed_dim", t.backbone.embed_dim),
          depths=tuple(o.get("swin_depths", t.backbone.depths)),
          num_heads=tuple(o.get("swin_num_heads", t.backbone.num_heads)),
          window_size=o.get("swin_window_size", t.backbone.window_size),
      ),
      pixel_decoder=dataclasses.replace(
          t.pixel_decoder,
          feature_size=o.get("feature_size", t.pixel_decoder.feature_size),
          mask_feature_size=o.get("mask_feature_size", t.pixel_decoder.mask_feature_size),
          encoder_layers=o.get("encoder_layers", t.pixel_decoder.encoder_layers),
          encoder_feedforward_dim=o.get(
              "encoder_feedforward_dim", t.pixel_decoder.encoder_feedforward_dim
          ),
          num_attention_heads=o.get("num_attention_heads", t.pixel_decoder.num_attention_heads),
      ),
      decoder=dataclasses.replace(
          t.decoder,
          hidden_dim=o.get("hidden_dim", t.decoder.hidden_dim),
          mask_feature_size=o.get("mask_feature_size", t.decoder.mask_feature_size),
          num_queries=o.get("num_queries", t.decoder.num_queries),
          decoder_layers=o.get("decoder_layers", t.decoder.decoder_layers),
          dim_feedforward=o.get("dim_feedforward", t.decoder.dim_feedforward),
          num_attention_heads=o.get("num_attention_heads", t.decoder.num_attention_heads),
      ),
      num_labels=o.get("num_labels", t.num_labels),
  )
  width = o.get("width", d.width)
  head_upsample = o.get("head_upsample", dict(d.head_upsample))
  return MTCPSettings(
      trunk=trunk,
      width=width,
      decoder=dataclasses.replace(
          d.decoder,
          embed_dim=width,
          depths=tuple(o.get("decoder_depths", d.decoder.depths)),
          num_heads=tuple(o.get("decoder_num_heads", d.decoder.num_heads)),
      ),
      head_upsample=tuple(sorted(dict(head_upsample).items())),
      deep_supervision_weight=float(o.get("deep_supervision_weight", d.deep_supervision_weight)),
      cfm_affinity=str(o.get("cfm_affinity", d.cfm_affinity)),
      cfm_chunk=int(o.get("cfm_chunk", d.cfm_chunk)),
      remat=bool(o.get("remat", d.remat)),
  )


def resize_bilinear_aligned(x: jax.Array, factor: int) -> jax.Array:
  """PyTorch's ``interpolate(scale_factor=factor, mode="bilinear", align_corners=True)`` of
  [B, H, W, C]: output (H · f, W · f), source = target · (in − 1) / (out − 1)."""
  if factor == 1:
    return x

  def axis(n_in):
    n_out = n_in * factor
    src = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

  r0, r1, rw = axis(x.shape[1])
  c0, c1, cw = axis(x.shape[2])
  x = x[:, r0] * (1 - rw)[None, :, None, None] + x[:, r1] * rw[None, :, None, None]
  return x[:, :, c0] * (1 - cw)[None, None, :, None] + x[:, :, c1] * cw[None, None, :, None]


def _rematerialised(cls: type[nn.Module], remat: bool, static_argnums: tuple[int, ...] = ()):
  """``cls``, or under ``remat`` ``nn.remat(cls)``: the module keeps only its inputs and outputs
  for the backward pass. ``static_argnums`` (counting the module as 0) name the non-array
  positional arguments, such as ``train``."""
  return nn.remat(cls, static_argnums=static_argnums) if remat else cls


class _Head(nn.Module):
  """A final head (module docstring, step 5)."""

  channels: int
  upsample: int
  depth_style: bool

  @nn.compact
  def __call__(self, x, *, train: bool):
    width = x.shape[-1]
    if self.depth_style:
      x = layers.Conv(width // 2, 1, name="conv_0")(x)
      x = resize_bilinear_aligned(x, self.upsample)
      x = nn.relu(layers.Conv(32, 1, name="conv_1")(x))
      return layers.Conv(self.channels, 1, name="conv_2")(x)
    x = layers.Conv(width, 1, use_bias=False, name="conv_0")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
    x = layers.Conv(self.channels, 1, name="conv_1")(nn.relu(x))
    return resize_bilinear_aligned(x, self.upsample)


class _IntermediateHead(nn.Module):
  """A deep-supervision head: conv1x1 → conv1x1 → BN → ReLU → conv1x1."""

  channels: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    width = x.shape[-1]
    x = layers.Conv(width, 1, use_bias=False, name="conv_0")(x)
    x = layers.Conv(width, 1, use_bias=False, name="conv_1")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
    return layers.Conv(self.channels, 1, name="conv_2")(nn.relu(x))


class MTCP(nn.Module):
  """MT-CP's model (module docstring).

  Attributes:
    num_classes: the dataset's semantic classes. tasks: names or ``Task`` records (heads).
    settings: the sizes (``MTCPSettings``).
    normalize_input: subtract ImageNet's mean and divide by its std first (what the Mask2Former
      checkpoint and MT-CP's input transforms expect of images in [0, 1]).
  """

  num_classes: int
  tasks: Sequence[str | Task] = ("semseg", "depth", "normal")
  settings: MTCPSettings = MTCPSettings()
  normalize_input: bool = True

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    """Predictions of every task.

    Args:
      images: float32 [B, H, W, 3] in [0, 1] (``normalize_input``) or already normalised.
      train: BatchNorm in training mode (batch statistics, updated running averages).

    Returns:
      {task: float32 [B, H, W, C_t] after the task's activation}, and in training
      "deep_supervision": two such dicts (strides 16 and 8), each with "weight":
      ``deep_supervision_weight`` (``mtjax.objective``).

    Raises:
      ValueError: fewer than 2 tasks (the Coherence Fusion needs others), or unknown tasks.
    """
    s = self.settings
    tasks = segnet.head_tasks("MTCP", self.tasks, self.num_classes)
    if len(tasks) < 2:
      raise ValueError(f"MTCP fuses each task with the others: give >= 2 tasks, got {len(tasks)}")
    height, width = images.shape[1:3]
    if self.normalize_input:
      images = (images - jnp.asarray(hrnet.IMAGENET_MEAN)) / jnp.asarray(hrnet.IMAGENET_STD)
    block = lambda cls, *static: _rematerialised(cls, s.remat, static)
    trunk_settings, decoder_settings = s.trunk, s.decoder
    if s.remat:  # Also every Swin block and deformable encoder layer inside them.
      trunk_settings = dataclasses.replace(
          s.trunk,
          backbone=dataclasses.replace(s.trunk.backbone, remat=True),
          pixel_decoder=dataclasses.replace(s.trunk.pixel_decoder, remat=True),
      )
      decoder_settings = dataclasses.replace(s.decoder, remat=True)
    trunk = block(mask2former.Mask2FormerTrunk)(trunk_settings, name="trunk")(images)
    shared = mask2former.query_weighted_features(trunk["mask_features"], trunk["masks"][-1])
    stages, fused = {}, {}
    for task in tasks:
      stages[task.name] = block(swin.SwinBackbone)(
          decoder_settings, patch_embedding=False, name=f"swin_{task.name}"
      )(shared)
      fused[task.name] = block(fpn_fusion.PyramidFusion)(s.width, name=f"fpn_{task.name}")(
          stages[task.name]
      )
    upsample = dict(s.head_upsample)
    out, deep = {}, [{"weight": s.deep_supervision_weight}, {"weight": s.deep_supervision_weight}]
    for task in tasks:
      t = task.name
      others = [fused[o.name] for o in tasks if o.name != t]
      refined = block(coherence_fusion.CoherenceFusion, 3)(
          s.cfm_affinity, s.cfm_chunk, name=f"cfm_{t}"
      )(fused[t], others, train)
      outs = block(trace_back.TraceBack, 3)(s.width, name=f"trace_back_{t}")(
          refined, stages[t][::-1], train
      )
      finish = lambda y: task.activation(
          trace_back.resize_bilinear(y.astype(jnp.float32), height, width)
      )
      for k in range(2):
        head = _IntermediateHead(task.channels, name=f"intermediate_{t}_{k}")
        deep[k][t] = finish(head(outs[k], train=train))
      regression = t in s.regression_heads
      head = _Head(task.channels, upsample.get(t, 1), regression, name=f"head_{t}")
      out[t] = finish(head(outs[-1], train=train))
    if train:  # Evaluation and prediction read the final heads only.
      out["deep_supervision"] = tuple(deep)
    return out
