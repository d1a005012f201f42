"""SegNet-MTL (MTAN / MTPSL "split") in PyTorch eager, the architecture of mtjax.models.segnet, for
the side-by-side speed comparison of ``tools/benchmark_train_step.py --compare_torch``.

Needs torch only (no torchvision): ``pip install torch==2.13.0`` (the CPU wheel) or the
``[hrnet]`` / ``[sam]`` extras. docs/metrics.md, "SegNet-MTL architecture".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int) -> nn.Sequential:
  return nn.Sequential(
      nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
  )


class SegNetMTL(nn.Module):
  """Encoder stage i: conv to f[i], 1 (i < 2) or 2 more convs, 2x2 max-pool with indices; the
  decoder mirrors it with max-unpool; heads 3x3 conv f0→f0 then 1x1 conv; semseg log-softmax,
  depth linear, normals L2-normalised. Xavier-normal conv kernels, zero biases."""

  def __init__(self, num_classes: int = 13, filters=(64, 128, 256, 512, 512)):
    super().__init__()
    f = list(filters)
    self.enc = nn.ModuleList()
    self.dec = nn.ModuleList()
    for i in range(len(f)):
      convs = [_conv(f[i - 1] if i else 3, f[i])] + [
          _conv(f[i], f[i]) for _ in range(1 if i < 2 else 2)
      ]
      self.enc.append(nn.Sequential(*convs))
    for i in reversed(range(len(f))):
      out = f[max(i - 1, 0)]
      convs = [_conv(f[i], out)] + [_conv(out, out) for _ in range(1 if i < 2 else 2)]
      self.dec.append(nn.Sequential(*convs))
    self.heads = nn.ModuleDict(
        {
            t: nn.Sequential(nn.Conv2d(f[0], f[0], 3, padding=1), nn.Conv2d(f[0], c, 1))
            for t, c in (("semseg", num_classes), ("depth", 1), ("normal", 3))
        }
    )
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.xavier_normal_(m.weight)
        nn.init.zeros_(m.bias)

  def forward(self, x):
    indices, sizes = [], []
    for stage in self.enc:
      x = stage(x)
      sizes.append(x.shape)
      x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
      indices.append(idx)
    for stage, idx, size in zip(self.dec, reversed(indices), reversed(sizes)):
      x = stage(F.max_unpool2d(x, idx, 2, 2, output_size=size[-2:]))
    out = {t: head(x) for t, head in self.heads.items()}
    out["semseg"] = F.log_softmax(out["semseg"], dim=1)
    out["normal"] = F.normalize(out["normal"], dim=1)
    return out


def mtpsl_loss(out, semseg, depth, normal):
  """MTPSL's three losses: cross-entropy (ignore −1), L1 over valid depth, 1 − cos over valid
  normals (docs/metrics.md)."""
  loss = F.nll_loss(out["semseg"], semseg, ignore_index=-1)
  valid = (depth != 0).float()
  loss = loss + ((out["depth"] - depth).abs() * valid).sum() / valid.sum().clamp(min=1)
  nvalid = (normal.abs().sum(1, keepdim=True) != 0).float()
  cos = (out["normal"] * normal).sum(1, keepdim=True)
  return loss + ((1 - cos) * nvalid).sum() / nvalid.sum().clamp(min=1)


def make_step(model: nn.Module, lr: float = 1e-4):
  """A closure running one Adam step on (x, semseg, depth, normal) NCHW tensors; returns the loss."""
  opt = torch.optim.Adam(model.parameters(), lr=lr)

  def step(x, semseg, depth, normal):
    loss = mtpsl_loss(model(x), semseg, depth, normal)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()

  return step
