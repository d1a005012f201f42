"""Generated edge maps for tests and benchmarks of ``mtjax.edge_metrics``: a warped Voronoi
partition's boundaries as ground truth and a blurred, shifted, noisy copy as the prediction."""

import numpy as np
from scipy import ndimage

from mtjax.ops.boundaries import seg_to_boundaries

# ----------------------------------------------------------------------------------------------
# Synthetic maps for tests and benchmarks.


def _smooth_field(rng, h, w, scale):
  """Smooth random field in [0, 1], features of about ``scale`` px (low-res noise, upsampled)."""
  sh, sw = max(2, int(round(h / scale)) + 2), max(2, int(round(w / scale)) + 2)
  low = ndimage.gaussian_filter(rng.normal(size=(sh, sw)), 0.8, mode="wrap")
  f = ndimage.zoom(low, (h / sh * 1.0001, w / sw * 1.0001), order=3, grid_mode=True,
                   mode="grid-wrap")[:h, :w]
  return (f - f.min()) / (f.max() - f.min() + 1e-12)


def synthetic_edge_maps(num, height, width, seed=0):
  """Synthetic (prob, gt) pairs that look like a boundary detector's output, for tests / benchmarks.

  gt = seg_to_boundaries of a warped Voronoi partition (8 to 30 regions); prob = the gt shifted by
  up to 2 px, with parts weakened or dropped, spurious contours of a random field, blurred
  (sigma 1.5), plus a smooth low background (< 0.025) and noise.

  Args:
    num: number of images.
    height: image height in pixels.
    width: image width in pixels.
    seed: seed of ``np.random.default_rng``.

  Returns:
    (probs float32 [num, H, W] in [0, 1], gts uint8 [num, H, W] in {0, 1}).
  """
  rng = np.random.default_rng(seed)
  probs = np.zeros((num, height, width), np.float32)
  gts = np.zeros((num, height, width), np.uint8)
  size = min(height, width)
  yy, xx = np.mgrid[:height, :width].astype(np.float32)
  for i in range(num):
    n = int(rng.integers(8, 31))
    seeds = rng.random((n, 2)).astype(np.float32) * np.float32([height, width])
    wy = yy + (_smooth_field(rng, height, width, 0.3 * size) - 0.5) * 0.3 * size
    wx = xx + (_smooth_field(rng, height, width, 0.3 * size) - 0.5) * 0.3 * size
    best = np.full((height, width), np.inf, np.float32)
    labels = np.zeros((height, width), np.int32)
    for j in range(n):
      d = (wy - seeds[j, 0]) ** 2 + (wx - seeds[j, 1]) ** 2
      closer = d < best
      best[closer] = d[closer]
      labels[closer] = j
    gt = seg_to_boundaries(labels)
    dy, dx = rng.integers(-2, 3, size=2)
    pred = np.roll(gt, (int(dy), int(dx)), axis=(0, 1)).astype(np.float32)
    pred *= np.clip(1.6 * _smooth_field(rng, height, width, 0.1 * size) - 0.3, 0, 1)
    spurious = seg_to_boundaries(_smooth_field(rng, height, width, 0.08 * size) > 0.7)
    pred = np.maximum(pred, spurious * 0.5 * _smooth_field(rng, height, width, 0.1 * size))
    pred = ndimage.gaussian_filter(pred, 1.5) / 0.27
    pred += 0.025 * _smooth_field(rng, height, width, 0.15 * size)
    pred += np.abs(rng.normal(0, 0.005, (height, width)))
    probs[i] = np.clip(pred, 0, 1)
    gts[i] = gt
  return probs, gts
