"""MT-CP's Trace-Back (Fontana et al., WACV 2025; ``TraceBack`` and ``SPF`` in Klodivio355/MT-CP
``models/utils.py``): a task's fused map refined back through its decoder's stages, coarsest
first, by Spatial Refinement Modules.

An SRM takes a carried map P and a stage's map F (C_F channels):

    P' = resize_bilinear(CBAM(P), F's size)      (``align_corners=False``)
    X  = [P', CBAM'(F)]
    out = ReLU(BN(conv1x1(X))) with ``width`` channels,   carried = ReLU(BN(conv1x1(X))) with C_F

Trace-Back runs one SRM per stage, coarsest first: the first carries the Coherence Fusion output,
each next one the previous SRM's ``carried`` map; the ``out`` maps are the refined predictions'
features (MT-CP's deep supervision reads the first two, its final head the last). The released
module lists a fourth SRM that is the third one again (the same object) and never runs it.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from mtjax.models import cbam, layers

__all__ = ["SpatialRefinement", "TraceBack", "resize_bilinear"]


def resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
  """PyTorch's ``interpolate(size=(h, w), mode="bilinear", align_corners=False)`` of [B, H, W, C]
  (no antialiasing)."""
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "linear", antialias=False)


class SpatialRefinement(nn.Module):
  """One SRM (module docstring): (P, F) -> (out [B, h, w, width], carried [B, h, w, C_F])."""

  width: int = 256

  @nn.compact
  def __call__(self, carried, stage_map, *, train: bool = False):
    bn = lambda name: nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
    )
    p = cbam.CBAM(name="sem_cbam")(carried, train=train)
    f = cbam.CBAM(name="dep_cbam")(stage_map, train=train)
    p = resize_bilinear(p, f.shape[1], f.shape[2])
    x = jax.numpy.concatenate([p, f], axis=-1)
    out = nn.relu(bn("b1")(layers.Conv(self.width, 1, name="sem_conv")(x)))
    carried = nn.relu(bn("b2")(layers.Conv(f.shape[-1], 1, name="dep_conv")(x)))
    return out, carried


class TraceBack(nn.Module):
  """(fused [B, h, w, C], stage maps coarsest first) -> the SRMs' ``out`` maps, coarsest first."""

  width: int = 256

  @nn.compact
  def __call__(self, fused, stage_maps, train: bool = False):
    outs, carried = [], fused
    for i, stage_map in enumerate(stage_maps):
      out, carried = SpatialRefinement(self.width, name=f"spf_modules_{i}")(
          carried, stage_map, train=train
      )
      outs.append(out)
    return outs
