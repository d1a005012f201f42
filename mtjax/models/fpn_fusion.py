"""MT-CP's per-task pyramid fusion (``DynamicFPNFusionModule`` in Klodivio355/MT-CP
``models/models_nyud_CL.py``): a task decoder's Swin stages fused top-down into its finest map.

Each stage map gets a 1x1 lateral conv to ``width`` channels; from the coarsest, the running sum
is upsampled by PyTorch's ``nearest`` rule (source index ⌊i · in / out⌋) and added to the next
finer lateral; a 3x3 conv of the finest sum is the output. The released module applies a 3x3 conv
to every level's sum and returns only the finest, so the coarser levels' convs (built, applied,
never read) get no gradient; they are not built here (``MTCP`` reports them).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from mtjax.models import layers

__all__ = ["PyramidFusion", "resize_nearest"]


def resize_nearest(x: jax.Array, height: int, width: int) -> jax.Array:
  """PyTorch's ``interpolate(size=(h, w), mode="nearest")`` of [B, H, W, C]."""
  rows = np.minimum(np.floor(np.arange(height) * (x.shape[1] / height)).astype(int), x.shape[1] - 1)
  cols = np.minimum(np.floor(np.arange(width) * (x.shape[2] / width)).astype(int), x.shape[2] - 1)
  return x[:, rows][:, :, cols]


class PyramidFusion(nn.Module):
  """Stage maps (finest first) -> the fused finest map [B, h_0, w_0, width]."""

  width: int = 256

  @nn.compact
  def __call__(self, stage_maps):
    laterals = [
        layers.Conv(self.width, 1, name=f"lateral_convs_{i}")(x) for i, x in enumerate(stage_maps)
    ]
    fused = laterals[-1]
    for i in range(len(laterals) - 2, -1, -1):
      fused = resize_nearest(fused, laterals[i].shape[1], laterals[i].shape[2]) + laterals[i]
    return layers.Conv(self.width, 3, name="fpn_convs_0")(fused)
