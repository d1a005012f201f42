"""CBAM, the convolutional block attention module (Woo et al., ECCV 2018), as MT-CP's Coherence
Fusion and Trace-Back modules use it (Klodivio355/MT-CP ``models/cbam.py``): a channel gate
then a spatial gate, each multiplying the input by a sigmoid.

* channel gate: σ(MLP(avg-pool(x)) + MLP(max-pool(x))) per channel, the MLP C → C/16 → C with a
  ReLU, shared by both pools;
* spatial gate: σ(BN(conv7x7([max_c x, mean_c x]))) per pixel, the conv without bias, the
  BatchNorm's momentum PyTorch's 0.01 (Flax's 0.99).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.models import layers

__all__ = ["CBAM"]


class CBAM(nn.Module):
  """x [B, H, W, C] -> x · channel gate · spatial gate, same shape.

  Attributes:
    reduction: the channel MLP's reduction ratio (16).
  """

  reduction: int = 16

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    c = x.shape[-1]
    hidden = nn.Dense(c // self.reduction, name="mlp_0")
    out = nn.Dense(c, name="mlp_1")
    mlp = lambda v: out(nn.relu(hidden(v)))
    attention = mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2)))
    x = x * jax.nn.sigmoid(attention)[:, None, None, :]
    pooled = jnp.stack([jnp.max(x, axis=-1), jnp.mean(x, axis=-1)], axis=-1)
    gate = layers.Conv(1, 7, use_bias=False, name="spatial_conv")(pooled)
    gate = nn.BatchNorm(
        use_running_average=not train, momentum=0.99, epsilon=1e-5, name="spatial_bn"
    )(gate)
    return x * jax.nn.sigmoid(gate)
