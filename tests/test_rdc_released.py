"""RDC's region contrast as released (mtjax/regularizers/rdc_released.py) against a float64
NumPy / SciPy transcription of the behaviour of the released model/region_cons.py (a6fa360)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from mtjax.regularizers import rdc_released


def _frechet(mu1, s1, mu2, s2, eps=1e-6):
  """calculate_frechet_distance: scipy sqrtm of the shifted product, elementwise abs."""
  offset = np.eye(s1.shape[0]) * eps
  m = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
  diff = mu1 - mu2
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.abs(m))


class _Released:
  """The released Region_Contra_Loss, its behaviour in float64: a bank list of (mean, cov) of
  the last 1000 Gaussians, appended before the loss; negatives = bank entries 0 and 1."""

  def __init__(self):
    self.bank_u, self.bank_s = [], []

  def forward(self, x, y, gray):  # x, y [H, W, D]; gray [H, W]
    ux, sx, uy, sy = [], [], [], []
    for v in range(256):
      where = gray == v
      if where.sum() < 10:
        continue
      rx, ry = x[where].T, y[where].T  # [D, n]
      ux.append(rx.mean(1)), sx.append(np.cov(rx)), uy.append(ry.mean(1)), sy.append(np.cov(ry))
    self.bank_u = (self.bank_u + ux + uy)[-1000:]
    self.bank_s = (self.bank_s + sx + sy)[-1000:]
    losses = []
    for i in range(len(ux)):
      neg = np.mean(
          [np.exp(-_frechet(ux[i], sx[i], self.bank_u[k], self.bank_s[k]) / 5.4) for k in (0, 1)]
      )
      losses.append(-np.log(1.0 / (neg + 1e-6) + 1e-6))
    return np.mean(losses), len(ux)


def _slots(rng, s, h=16, w=16, d=4, values=10):
  x = rng.normal(size=(s, h, w, d)) * rng.uniform(0.2, 2.0, size=(s, 1, 1, d))
  y = 0.5 * x + rng.normal(size=(s, h, w, d)) * 0.3
  gray = rng.integers(0, values, size=(s, h, w))
  gray[:, :2] = 200  # A value with 32 pixels, far from the others.
  gray[:, 2, :5] = 7  # Extra pixels for one value; others fall below 10 at random.
  return x, y, gray


def test_bank_negatives_and_loss_equal_the_released_code_across_steps():
  rng = np.random.default_rng(0)
  ref = _Released()
  bank = rdc_released.init_bank(4)
  step = jax.jit(
      lambda bank, x, y, g, sv: rdc_released.contrast(
          bank,
          *rdc_released.region_statistics(x, g)[:2],
          *rdc_released.region_statistics(y, g)[:2],
          rdc_released.region_statistics(x, g)[2],
          sv,
      )
  )
  total = 0
  for call in range(3):  # 3 x 40 slots x ~11 regions x 2 > 1000: the ring wraps.
    x, y, gray = _slots(rng, 40)
    slot_valid = np.ones(40, bool)
    slot_valid[5] = False  # Padding: neither appends nor counts.
    bank, loss, counted = step(
        bank,
        jnp.asarray(x, jnp.float32),
        jnp.asarray(y, jnp.float32),
        jnp.asarray(gray),
        jnp.asarray(slot_valid),
    )
    want = []
    for k in range(40):
      if slot_valid[k]:
        value, n = ref.forward(x[k], y[k], gray[k])
        total += 2 * n
        want.append(value)
    got = np.asarray(loss)[slot_valid]
    assert np.all(np.asarray(counted) == slot_valid)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert int(bank["count"]) == total > 1000
  # The two negatives are the oldest of the last 1000: the ring holds the released list.
  first = (int(bank["count"]) - 1000) % 1000
  np.testing.assert_allclose(np.asarray(bank["means"])[first], ref.bank_u[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(bank["covs"])[first], ref.bank_s[0], rtol=1e-4, atol=1e-5)


def test_frechet_distance_with_the_abs_of_a_non_symmetric_root():
  rng = np.random.default_rng(1)
  for d in (2, 5, 8):
    a = rng.normal(size=(d, 3))
    b = rng.normal(size=(d, 12))
    s1, s2 = a @ a.T / 2, b @ b.T / 11  # Rank 3 and full rank.
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    got = rdc_released.frechet_distance(*(jnp.asarray(v, jnp.float32) for v in (mu1, s1, mu2, s2)))
    assert float(got) == pytest.approx(_frechet(mu1, s1, mu2, s2), rel=1e-3, abs=1e-3)


def test_unbiased_statistics_and_the_ten_pixel_rule():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(1, 6, 6, 3))
  gray = np.zeros((1, 6, 6), int)
  gray[0, :2] = 9  # 12 pixels
  gray[0, 2, :3] = 255  # 3 pixels: no region
  means, covs, valid = rdc_released.region_statistics(
      jnp.asarray(f, jnp.float32), jnp.asarray(gray)
  )
  assert np.flatnonzero(np.asarray(valid[0])).tolist() == [0, 9]
  sel = f[0][gray[0] == 9]
  np.testing.assert_allclose(means[0, 9], sel.mean(0), rtol=1e-5)
  np.testing.assert_allclose(covs[0, 9], np.cov(sel.T), rtol=1e-4, atol=1e-6)


def test_released_weight_ramps_per_epoch():
  got = [float(rdc_released.released_weight(e)) for e in (0, 1, 10, 19, 20, 30)]
  np.testing.assert_allclose(got, [0.0, 0.0075, 0.075, 0.1425, 0.15, 0.15], rtol=1e-6)
