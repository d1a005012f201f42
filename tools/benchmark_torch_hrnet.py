"""Times a PyTorch eager train step of the multi-task HRNet that mtjax builds (timm's backbone,
random weights, + the same heads: branches to stride 4, per-task 1x1 conv-BN-ReLU + 1x1 conv,
bilinear to the input; Adam; cross-entropy + L1 + (1 − cos) losses), to compare with

    python tools/benchmark_train_step.py --model hrnet_w18 --batch_size 2 --height 288 --width 384
    python tools/benchmark_torch_hrnet.py --model hrnet_w18 --batch_size 2 --height 288 --width 384

Needs torch and timm (pip install -e ".[hrnet]"). Prints ms/step (median) and images/s.
"""

import argparse
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn


class HRNetMTL(nn.Module):

  def __init__(self, variant: str, num_classes: int = 13):
    super().__init__()
    self.backbone = timm.create_model(
        variant, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4)
    )
    width = sum(self.backbone.feature_info.channels())
    outs = {"semseg": num_classes, "depth": 1, "normal": 3}
    self.heads = nn.ModuleDict(
        {
            t: nn.Sequential(
                nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, c, 1)
            )
            for t, c in outs.items()
        }
    )

  def forward(self, x):
    feats = self.backbone(x)
    size = feats[0].shape[-2:]
    feat = torch.cat(
        [feats[0]]
        + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]],
        1,
    )
    out = {
        t: F.interpolate(h(feat), size=x.shape[-2:], mode="bilinear", align_corners=False)
        for t, h in self.heads.items()
    }
    out["semseg"] = F.log_softmax(out["semseg"], 1)
    out["normal"] = F.normalize(out["normal"], dim=1)
    return out


def main():
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--model", default="hrnet_w18", choices=("hrnet_w18", "hrnet_w18_small_v2"))
  p.add_argument("--batch_size", type=int, default=2)
  p.add_argument("--height", type=int, default=288)
  p.add_argument("--width", type=int, default=384)
  p.add_argument("--steps", type=int, default=5)
  args = p.parse_args()
  torch.manual_seed(0)
  model = HRNetMTL(args.model).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)
  b, h, w = args.batch_size, args.height, args.width
  x = torch.rand(b, 3, h, w)
  semseg = torch.randint(-1, 13, (b, h, w))
  depth = torch.rand(b, 1, h, w) * 5 + 0.5
  normal = F.normalize(torch.randn(b, 3, h, w), dim=1)

  def step():
    out = model(x)
    loss = F.nll_loss(out["semseg"], semseg, ignore_index=-1) + (out["depth"] - depth).abs().mean()
    loss = loss + (1 - (out["normal"] * normal).sum(1)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()

  step()  # Warm-up.
  times = []
  for i in range(args.steps):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
    print(f"step {i}: {times[-1] * 1e3:.1f} ms loss={loss:.4f}", flush=True)
  median = float(np.median(times))
  print(
      f"torch {torch.__version__} eager {args.model} threads={torch.get_num_threads()} batch={b} "
      f"{h}x{w}: {median * 1e3:.1f} ms/step (median of {args.steps}), {b / median:.2f} images/s"
  )


if __name__ == "__main__":
  main()
