"""MT-CP's model (Fontana et al., WACV 2025) in PyTorch eager, with the released module names.

The structure and parameter names of ``MultiTaskModel_NYUD`` (Klodivio355/MT-CP
``models/models_nyud_CL.py``) and ``MultiTaskModel_PASCAL`` (``models/models_pascal_CL.py``), so
that ``state_dict()`` has a released checkpoint's keys. Used as

* the reference of ``mtjax.models.mtcp_import`` (tests/test_mtcp_import.py: random weights, the
  whole model's outputs and parameter counts);
* the PyTorch side of ``tools/benchmark_train_step.py --model mtcp --compare_torch``.

The trunk is ``transformers``' ``Mask2FormerForUniversalSegmentation`` built from a config (no
download; the release loads ``facebook/mask2former-swin-small-ade-semantic``); the per-task Swins
follow the release's ``models/swim_transformer2.py`` (the original Swin's names: ``attn.qkv``,
``norm1``, ``norm{i}``; its ``forward2``, which skips the patch embedding it builds); the
pyramid, Coherence Fusion (``GAAF_module2``), CBAM, Trace-Back (``SPF``, ``TraceBack``) and heads
follow ``models/utils.py``, ``models/cbam.py`` and the two model files. ``width`` is the
release's 256 (its hard-coded 256 / 512 / 1024 become width · 1, 2, 4), smaller in tests. Built as
the release builds them and never used by its forward: ``backbone`` (the release's Swin-S of
``get_backbone``; ``unused_backbone=True``), each Swin's ``patch_embed``, the pyramids'
``fpn_convs[1:]`` (applied, output discarded), ``gaaf*.conv2`` / ``conv3``, ``spf_modules[3]`` (the
same module as ``[2]``), ``log_var_list``, ``skip_gate``, ``lambda_param``, ``alpha_param``.

Needs torch and transformers (``pip install -e ".[mtcp]"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from mtjax.models.mtcp_import import PRED_LAYER_NAMES, RELEASED_NAMES, SUFFIXES

# ---- the per-task Swin (models/swim_transformer2.py's structure) ----


def _partition(x, w):
  b, h, wd, c = x.shape
  x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, w * w, c)


def _reverse(windows, w, h, wd):
  b = windows.shape[0] // ((h // w) * (wd // w))
  x = windows.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h, wd, -1)


class WindowAttention(nn.Module):

  def __init__(self, dim, window, heads):
    super().__init__()
    self.window, self.heads = window, heads
    self.scale = (dim // heads) ** -0.5
    self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    rel = (coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]).permute(1, 2, 0) + (
        window - 1
    )
    self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
    self.qkv = nn.Linear(dim, 3 * dim)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x, mask):
    bw, n, c = x.shape
    qkv = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    attn = (qkv[0] * self.scale) @ qkv[1].transpose(-2, -1)
    bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
    attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
    if mask is not None:
      nw = mask.shape[0]
      attn = attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
      attn = attn.view(bw, self.heads, n, n)
    out = attn.softmax(-1) @ qkv[2]
    return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):

  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):

  def __init__(self, dim, heads, window, shift):
    super().__init__()
    self.window, self.shift = window, shift
    self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
    self.attn = WindowAttention(dim, window, heads)
    self.mlp = Mlp(dim, 4 * dim)

  def forward(self, x, h, w, mask):
    b, _, c = x.shape
    y = self.norm1(x).view(b, h, w, c)
    ws = self.window
    y = F.pad(y, (0, 0, 0, (-w) % ws, 0, (-h) % ws))
    hp, wp = y.shape[1:3]
    if self.shift:
      y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
    y = _reverse(self.attn(_partition(y, ws), mask if self.shift else None), ws, hp, wp)
    if self.shift:
      y = torch.roll(y, (self.shift, self.shift), (1, 2))
    x = x + y[:, :h, :w].reshape(b, h * w, c)
    return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.norm = nn.LayerNorm(4 * dim)
    self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

  def forward(self, x, h, w):
    b, _, c = x.shape
    x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):

  def __init__(self, dim, depth, heads, window, downsample):
    super().__init__()
    self.window = window
    self.blocks = nn.ModuleList(
        SwinBlock(dim, heads, window, 0 if j % 2 == 0 else window // 2) for j in range(depth)
    )
    self.downsample = PatchMerging(dim) if downsample else None

  def _mask(self, h, w, device):
    ws, s = self.window, self.window // 2
    hp, wp = h + (-h) % ws, w + (-w) % ws
    img = torch.zeros(1, hp, wp, 1, device=device)
    k = 0
    for rows in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
      for cols in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        img[:, rows, cols] = k
        k += 1
    windows = _partition(img, ws).squeeze(-1)
    diff = windows[:, None, :] - windows[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

  def forward(self, x, h, w):
    mask = self._mask(h, w, x.device)
    for block in self.blocks:
      x = block(x, h, w, mask)
    if self.downsample is None:
      return x, x, h, w
    return x, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
  """Built by the released Swin, never applied by ``forward2``."""

  def __init__(self, in_chans, dim):
    super().__init__()
    self.proj = nn.Conv2d(in_chans, dim, 4, 4)
    self.norm = nn.LayerNorm(dim)


class SwinDecoder(nn.Module):
  """A per-task Swin: ``forward2`` of the release (the input map taken as tokens)."""

  def __init__(self, dim, depths=(1, 2, 1), heads=(2, 2, 2), window=7, in_chans=None):
    super().__init__()
    self.patch_embed = PatchEmbed(in_chans or dim, dim)
    self.layers = nn.ModuleList(
        BasicLayer(dim * 2**i, d, n, window, i < len(depths) - 1)
        for i, (d, n) in enumerate(zip(depths, heads))
    )
    for i in range(len(depths)):
      self.add_module(f"norm{i}", nn.LayerNorm(dim * 2**i))

  def forward2(self, x):
    b, c, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    outs = []
    for i, layer in enumerate(self.layers):
      out, x, h2, w2 = layer(x, h, w)
      out = getattr(self, f"norm{i}")(out)
      outs.append(out.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous())
      h, w = h2, w2
    return outs[-1], outs


# ---- pyramid, CBAM, Coherence Fusion, Trace-Back, heads ----


class DynamicFPNFusionModule(nn.Module):

  def __init__(self, input_channels, width):
    super().__init__()
    self.lateral_convs = nn.ModuleList(nn.Conv2d(c, width, 1) for c in input_channels)
    self.fpn_convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in input_channels)

  def forward(self, *inputs):
    laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
    fused = laterals[-1]
    outputs = [self.fpn_convs[-1](fused)]
    for i in range(len(laterals) - 2, -1, -1):
      fused = F.interpolate(fused, size=laterals[i].shape[2:], mode="nearest") + laterals[i]
      outputs.insert(0, self.fpn_convs[i](fused))
    return outputs[0]


class BasicConv(nn.Module):

  def __init__(self):
    super().__init__()
    self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
    self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

  def forward(self, x):
    return self.bn(self.conv(x))


class ChannelGate(nn.Module):

  def __init__(self, channels, reduction=16):
    super().__init__()
    self.mlp = nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels, channels // reduction),
        nn.ReLU(),
        nn.Linear(channels // reduction, channels),
    )

  def forward(self, x):
    att = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
    return x * torch.sigmoid(att)[:, :, None, None]


class SpatialGate(nn.Module):

  def __init__(self):
    super().__init__()
    self.spatial = BasicConv()

  def forward(self, x):
    pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):

  def __init__(self, channels):
    super().__init__()
    self.ChannelGate = ChannelGate(channels)  # pylint: disable=invalid-name  # The release's.
    self.SpatialGate = SpatialGate()  # pylint: disable=invalid-name

  def forward(self, x):
    return self.SpatialGate(self.ChannelGate(x))


class GAAF_module2(nn.Module):  # pylint: disable=invalid-name  # The release's name.
  """The Coherence Fusion Module for 3 tasks (the task's map, the other two concatenated)."""

  def __init__(self, dim, chunk=0):
    super().__init__()
    self.dim, self.chunk = dim, chunk
    self.cbam_sem, self.shared_dep2 = CBAM(dim), CBAM(dim)
    self.cbam_dep, self.cbam_dep2 = CBAM(2 * dim), CBAM(2 * dim)
    self.cbam_sem_norm, self.shared_dep2_norm = nn.BatchNorm2d(dim), nn.BatchNorm2d(dim)
    self.cbam_dep_norm, self.cbam_dep2_norm = nn.BatchNorm2d(2 * dim), nn.BatchNorm2d(2 * dim)
    self.gate1, self.gate2 = nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1)
    self.conv1, self.conv2, self.conv3 = (nn.Conv2d(2 * dim, 2 * dim, 1) for _ in range(3))

  def forward(self, task_map, others):
    sem = self.cbam_sem_norm(self.cbam_sem(task_map))
    a1, a2 = others[:, : self.dim], others[:, self.dim :]
    gated = torch.cat([a1 * torch.sigmoid(self.gate1(a1)), a2 * torch.sigmoid(self.gate2(a2))], 1)
    fused = F.relu(self.conv1(gated))
    theta = F.relu(self.cbam_dep_norm(self.cbam_dep(fused)))
    phi = F.relu(self.cbam_dep2_norm(self.cbam_dep2(fused)))
    b, c, h, w = phi.shape
    rows, keys = theta.view(b, c, -1).transpose(1, 2), phi.view(b, c, -1)
    values = sem.view(b, self.dim, -1).transpose(1, 2)
    mix = lambda r: torch.softmax(r @ keys, -1) @ values
    if self.chunk:  # The rows a chunk at a time, recomputed for the backward pass.
      out = torch.cat(
          [
              torch.utils.checkpoint.checkpoint(mix, r, use_reentrant=False)
              for r in rows.split(self.chunk, 1)
          ],
          1,
      )
    else:
      out = mix(rows)
    out = out.transpose(1, 2)
    return self.shared_dep2_norm(self.shared_dep2(out.reshape(b, self.dim, h, w)))


class SPF(nn.Module):

  def __init__(self, pred_dim, back_dim, width):
    super().__init__()
    self.sem_cbam, self.dep_cbam = CBAM(pred_dim), CBAM(back_dim)
    self.sem_conv = nn.Conv2d(pred_dim + back_dim, width, 1)
    self.dep_conv = nn.Conv2d(pred_dim + back_dim, back_dim, 1)
    self.b1, self.b2 = nn.BatchNorm2d(width), nn.BatchNorm2d(back_dim)

  def forward(self, pred, back):
    pred, back = self.sem_cbam(pred), self.dep_cbam(back)
    pred = F.interpolate(pred, size=back.shape[2:], mode="bilinear", align_corners=False)
    x = torch.cat([pred, back], 1)
    return F.relu(self.b1(self.sem_conv(x))), F.relu(self.b2(self.dep_conv(x)))


class TraceBack(nn.Module):

  def __init__(self, width):
    super().__init__()
    dims = ((width, 4 * width), (4 * width, 2 * width), (2 * width, width))
    self.spf_modules = nn.ModuleList(SPF(p, q, width) for p, q in dims)
    self.spf_modules.append(self.spf_modules[2])  # The release's fourth entry: the third again.

  def forward(self, stages, initial):
    outs, carried = [], initial
    for spf, stage in zip(self.spf_modules, stages):
      out, carried = spf(carried, stage)
      outs.append(out)
    return outs


class Interpolate(nn.Module):

  def __init__(self, factor):
    super().__init__()
    self.factor = factor

  def forward(self, x):
    return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=True)


def project(width, channels, upsample, regression):
  """A final head: the release's depth structure for regression heads, else conv-BN-ReLU-conv."""
  if regression:
    return nn.Sequential(
        nn.Conv2d(width, width // 2, 1),
        Interpolate(upsample),
        nn.Conv2d(width // 2, 32, 1),
        nn.ReLU(True),
        nn.Conv2d(32, channels, 1),
    )
  layers = [nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
  layers.append(nn.Conv2d(width, channels, 1))
  return nn.Sequential(*layers, *([Interpolate(upsample)] if upsample != 1 else []))


class Pred(nn.Module):
  """``SemSegPred`` / ``DepthPred`` / ``NormalPred`` (identical structures)."""

  def __init__(self, width, channels):
    super().__init__()
    self.module = nn.Sequential(
        nn.Conv2d(width, width, 1, bias=False),
        nn.Conv2d(width, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(True),
        nn.Conv2d(width, channels, 1),
    )

  def forward(self, x):
    return self.module(x)


class MTCP(nn.Module):
  """The released multi-task model for 3 tasks.

  Args:
    trunk_config: a ``transformers.Mask2FormerConfig`` (its ``mask_feature_size`` = ``width``).
    channels: output channels per task, in the release's order (NYUD: semseg, depth, normals).
    dataset: "nyud" | "pascal" (the module names differ).
    upsample: each final head's upsampling factor; regression: which heads have the depth
      structure (NYUD: (False, True, False)).
    unused_backbone: also build the release's never-used Swin-S (``self.backbone``), for its
      parameter count.
    cfm_chunk: the Coherence Fusion's affinity rows at a time, each chunk recomputed in the
      backward pass (``torch.utils.checkpoint``; mtjax's ``cfm_chunk``); 0: whole, as released.
  """

  def __init__(
      self,
      trunk_config,
      channels,
      *,
      dataset="nyud",
      upsample=(2, 2, 1),
      regression=(False, True, False),
      width=256,
      unused_backbone=False,
      cfm_chunk=0,
  ):
    super().__init__()
    import transformers  # pylint: disable=g-import-not-at-top

    if len(channels) != 3:
      raise ValueError(f"the released MT-CP has 3 tasks, got channels {channels}")
    self.backbon = transformers.Mask2FormerForUniversalSegmentation(trunk_config)
    if unused_backbone:
      # get_backbone's Swin-S (swim_transformer2.SwinTransformer, 3 input channels).
      self.backbone = SwinDecoder(96, (2, 2, 18, 2), (3, 6, 12, 24), in_chans=3)
    for k in range(3):
      self.add_module(f"transformer{k + 1}", SwinDecoder(width))
      self.add_module(
          RELEASED_NAMES[dataset]["fpn"][k],
          DynamicFPNFusionModule((width, 2 * width, 4 * width), width),
      )
      self.add_module(
          RELEASED_NAMES[dataset]["project"][k],
          project(width, channels[k], upsample[k], regression[k]),
      )
      self.add_module(
          PRED_LAYER_NAMES[k], nn.ModuleList(Pred(width, channels[k]) for _ in range(2))
      )
      self.add_module(f"trace_back{SUFFIXES[k]}", TraceBack(width))
      self.add_module(f"gaaf{SUFFIXES[k]}", GAAF_module2(width, cfm_chunk))
    self.log_var_list = nn.Parameter(torch.zeros(3))
    self.skip_gate = nn.Parameter(torch.ones(1))
    self.lambda_param = nn.Parameter(torch.tensor([0.1]))
    self.alpha_param = nn.Parameter(torch.tensor([0.01]))
    self.dataset = dataset

  def forward(self, x):
    """Images [B, 3, H, W] -> (final [3 x [B, C_t, H, W]], deep supervision [2 x 3 x [...]])."""
    size = x.shape[2:]
    out = self.backbon(x)
    shared = torch.einsum(
        "bnhw,bdhw->bdhw", out.masks_queries_logits, out.pixel_decoder_last_hidden_state
    )
    stages = [getattr(self, f"transformer{k + 1}").forward2(shared)[1] for k in range(3)]
    fused = [getattr(self, RELEASED_NAMES[self.dataset]["fpn"][k])(*stages[k]) for k in range(3)]
    final, deep = [], [[], []]
    for k in range(3):
      others = torch.cat([fused[o] for o in range(3) if o != k], 1)
      refined = getattr(self, f"gaaf{SUFFIXES[k]}")(fused[k], others)
      outs = getattr(self, f"trace_back{SUFFIXES[k]}")(stages[k][::-1], refined)
      for i in range(2):
        y = getattr(self, PRED_LAYER_NAMES[k])[i](outs[i])
        deep[i].append(F.interpolate(y, size, mode="bilinear"))
      y = getattr(self, RELEASED_NAMES[self.dataset]["project"][k])(outs[-1])
      final.append(F.interpolate(y, size, mode="bilinear"))
    return final, deep


def trunk_config(settings):
  """``transformers.Mask2FormerConfig`` of ``mtjax.models.mask2former.Mask2FormerSettings``
  (the same sizes; the Swin without stochastic depth, as in evaluation-equal timing)."""
  import transformers  # pylint: disable=g-import-not-at-top

  b, p, d = settings.backbone, settings.pixel_decoder, settings.decoder
  backbone = transformers.SwinConfig(
      embed_dim=b.embed_dim,
      depths=list(b.depths),
      num_heads=list(b.num_heads),
      window_size=b.window_size,
      out_features=["stage1", "stage2", "stage3", "stage4"],
      drop_path_rate=0.0,
  )
  return transformers.Mask2FormerConfig(
      backbone_config=backbone,
      feature_size=p.feature_size,
      mask_feature_size=p.mask_feature_size,
      encoder_layers=p.encoder_layers,
      encoder_feedforward_dim=p.encoder_feedforward_dim,
      hidden_dim=d.hidden_dim,
      num_queries=d.num_queries,
      num_attention_heads=d.num_attention_heads,
      decoder_layers=d.decoder_layers,
      dim_feedforward=d.dim_feedforward,
      num_labels=settings.num_labels,
  )


def make_step(model: MTCP, lr: float = 5e-5, weight_decay: float = 1e-4, deep_weight: float = 0.5):
  """A closure running one AdamW step on NCHW (x, semseg, depth, normal) for NYUD's 3 tasks:
  MTPSL's losses (``torch_segnet.mtpsl_loss``, as mtjax's task records) of the final heads plus
  ``deep_weight`` x those of each deep-supervision pair; returns the loss."""
  import torch_segnet  # pylint: disable=g-import-not-at-top  # tools/, beside this file.

  opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

  def activated(outputs):
    semseg, depth, normal = outputs
    return {
        "semseg": F.log_softmax(semseg, 1),
        "depth": depth,
        "normal": F.normalize(normal, dim=1),
    }

  def step(x, semseg, depth, normal):
    final, deep = model(x)
    loss = torch_segnet.mtpsl_loss(activated(final), semseg, depth, normal)
    for outputs in deep:
      loss = loss + deep_weight * torch_segnet.mtpsl_loss(activated(outputs), semseg, depth, normal)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()

  return step
