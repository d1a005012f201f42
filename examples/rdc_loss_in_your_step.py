"""Region-aware distribution contrast (Li et al., ECCV 2024) in your own jitted train step.

Your model maps an image to features; regions (SAM masks, superpixels, ground-truth classes: any
int32 map, −1 = no region) group its pixels. Each region's features become a Gaussian
(``mtjax.ops.gaussian.region_gaussians``), every region of the prediction is compared with every
region of the target by the squared 2-Wasserstein distance (``pairwise_wasserstein2``), and
RDC's InfoNCE (``mtjax.regularizers.rdc.info_nce``, Eq. 3) pulls region i of the prediction
towards region i of the target and away from the image's other regions.

    python examples/rdc_loss_in_your_step.py [--steps 30]

Prints the loss every 10 steps; it falls as the features of each region move to their target's.
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mtjax.ops import gaussian
from mtjax.regularizers import rdc


def region_contrast_loss(features, targets, regions, num_regions: int, temperature: float):
  """Mean InfoNCE over the regions of a batch, the similarity exp(−W2 / τ).

  Args:
    features: float32 [B, H, W, D], the prediction's features.
    targets: float32 [B, H, W, D], the target's features (e.g. a mapped ground truth).
    regions: int32 [B, H, W], region ids 0..R−1, −1 = none.
    num_regions: R (static). temperature: τ, in the units of W2 (squared feature units).

  Returns:
    float32 scalar: the mean of L_i over the anchors with a positive and a negative.
  """
  both = jnp.concatenate([features, targets])  # One moments call for both maps.
  means, covs, counts = gaussian.region_gaussians(
      both, jnp.concatenate([regions, regions]), num_regions, covariance="full", eps=1e-4
  )
  b = features.shape[0]
  w2 = gaussian.pairwise_wasserstein2(means[:b], covs[:b], means[b:], covs[b:])  # [B, R, R]
  present = counts[:b] > 0
  loss_sum, anchors = rdc.info_nce(-w2 / temperature, present[:, None, :], present)
  return jnp.sum(loss_sum) / jnp.maximum(jnp.sum(anchors), 1.0)


class Features(nn.Module):
  """A stand-in for your model: two 3x3 convs to D channels."""

  dim: int

  @nn.compact
  def __call__(self, images):
    x = nn.relu(nn.Conv(16, (3, 3))(images))
    return nn.Conv(self.dim, (3, 3))(x)


def main(argv=None) -> list[float]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=30, help="train steps (default 30)")
  args = parser.parse_args(argv)

  batch, height, width, dim, num_regions = 2, 16, 16, 4, 4
  keys = jax.random.split(jax.random.key(0), 3)
  images = jax.random.uniform(keys[0], (batch, height, width, 3))
  # Four quadrant regions per image, and a target feature distribution per region.
  quadrant = (jnp.arange(height)[:, None] >= height // 2) * 2 + (jnp.arange(width) >= width // 2)
  regions = jnp.broadcast_to(quadrant, (batch, height, width)).astype(jnp.int32)
  centres = 2.0 * jax.random.normal(keys[1], (num_regions, dim))
  targets = centres[regions] + 0.3 * jax.random.normal(keys[2], (batch, height, width, dim))

  model = Features(dim)
  params = model.init(jax.random.key(1), images)
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state):
    def loss_fn(p):
      return region_contrast_loss(model.apply(p, images), targets, regions, num_regions, 8.0)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for step in range(args.steps):
    params, opt_state, loss = train_step(params, opt_state)
    losses.append(float(loss))
    if step % 10 == 0 or step == args.steps - 1:
      print(f"step {step}: L_RC {losses[-1]:.4f}")
  return losses


if __name__ == "__main__":
  main()
