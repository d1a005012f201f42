"""MT-CP's Coherence Fusion Module (Fontana et al., WACV 2025; ``GAAF_module2`` in
Klodivio355/MT-CP ``models/utils.py``): a task's map refined by the other tasks' maps.

With S the task's map and A_1 … A_{T−1} the other tasks' (each [B, H, W, C]):

    s   = BN(CBAM(S))
    g_k = A_k · σ(conv1x1(A_k))                            a sigmoid gate per other task
    f   = ReLU(conv1x1([g_1, …, g_{T−1}]))                 (T − 1) C channels
    θ   = ReLU(BN(CBAM(f))),  φ = ReLU(BN(CBAM'(f)))       two views of the fused others
    W   = softmax_rows(θ φᵀ)                               [B, HW, HW], pixel affinities
    out = BN(CBAM''(W s))

``affinity = "cosine"`` takes W = softmax_rows(cos(θ_p, φ_q)) instead (θ and φ L2-normalised per
pixel first, no temperature): descriptions of the module name a cosine alignment, and the
released forward computes no cosine anywhere (its ``models/utils.py`` has none), so the default
is the released dot product and the cosine is an option to measure, not a reproduction.
The released module also builds two 1x1 convs (``conv2``, ``conv3``) that its forward never
applies; they are not built here (``MTCP`` reports them). The affinity is HW x HW: 19,200² per
image for a stride-4 map of 480x640.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.models import cbam, layers

__all__ = ["AFFINITIES", "CoherenceFusion", "affinity_mix"]


AFFINITIES = ("dot", "cosine")


def affinity_mix(theta: jax.Array, phi: jax.Array, values: jax.Array, chunk: int = 0) -> jax.Array:
  """softmax_rows(θ φᵀ) v: [B, P, D], [B, Q, D], [B, Q, C] -> [B, P, C] (the Coherence Fusion's
  pixel mixing; attention with queries θ, keys φ, values v and no scaling).

  ``chunk`` > 0 computes the rows ``chunk`` at a time under ``jax.checkpoint``: the [B, P, Q]
  affinity is never held whole, in the forward or the backward pass (each chunk's rows are
  recomputed for the gradient), so memory grows as chunk · Q instead of P · Q, at the cost of
  a second forward matmul in training. 0: the whole matrix, as the release computes it. The
  result is the same up to float rounding.
  """
  mix = lambda t: jnp.einsum(
      "bpq,bqc->bpc", jax.nn.softmax(jnp.einsum("bpc,bqc->bpq", t, phi), axis=-1), values
  )
  p = theta.shape[1]
  if chunk <= 0 or chunk >= p:
    return mix(theta)
  pad = (-p) % chunk
  rows = jnp.pad(theta, ((0, 0), (0, pad), (0, 0)))
  rows = rows.reshape(theta.shape[0], -1, chunk, theta.shape[2]).swapaxes(0, 1)
  out = jax.lax.map(jax.checkpoint(mix), rows)  # [P / chunk, B, chunk, C]
  return out.swapaxes(0, 1).reshape(theta.shape[0], p + pad, -1)[:, :p]


class CoherenceFusion(nn.Module):
  """(S [B, H, W, C], others: T − 1 maps [B, H, W, C]) -> [B, H, W, C] (module docstring).

  Attributes:
    affinity: "dot" (the released θ φᵀ) or "cosine" (module docstring).
    chunk: ``affinity_mix``'s rows per chunk (0: the whole HW x HW affinity at once).

  Raises:
    ValueError: an unknown ``affinity``.
  """

  affinity: str = "dot"
  chunk: int = 0

  @nn.compact
  def __call__(self, task_map, others, train: bool = False):
    bn = lambda name: nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
    )
    c = task_map.shape[-1]
    s = bn("cbam_sem_norm")(cbam.CBAM(name="cbam_sem")(task_map, train=train))
    gated = [
        a * jax.nn.sigmoid(layers.Conv(c, 1, name=f"gate{k + 1}")(a)) for k, a in enumerate(others)
    ]
    fused_in = jnp.concatenate(gated, axis=-1)
    fused = nn.relu(layers.Conv(fused_in.shape[-1], 1, name="conv1")(fused_in))
    theta = nn.relu(bn("cbam_dep_norm")(cbam.CBAM(name="cbam_dep")(fused, train=train)))
    phi = nn.relu(bn("cbam_dep2_norm")(cbam.CBAM(name="cbam_dep2")(fused, train=train)))
    b, h, w, _ = task_map.shape
    theta, phi = theta.reshape(b, h * w, -1), phi.reshape(b, h * w, -1)
    if self.affinity not in AFFINITIES:
      raise ValueError(f"Coherence Fusion affinity {self.affinity!r}: expected one of {AFFINITIES}")
    if self.affinity == "cosine":
      unit = lambda v: v * jax.lax.rsqrt(jnp.maximum(jnp.sum(v * v, -1, keepdims=True), 1e-24))
      theta, phi = unit(theta), unit(phi)
    out = affinity_mix(theta, phi, s.reshape(b, h * w, c), self.chunk).reshape(b, h, w, c)
    return bn("shared_dep2_norm")(cbam.CBAM(name="shared_dep2")(out, train=train))
