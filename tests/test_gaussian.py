"""mtjax.ops.gaussian against float64 NumPy/SciPy references, and its gradients on degenerate regions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from mtjax.ops import gaussian, region_moments

METHODS = ("eigh", "newton_schulz")


def random_cov(rng, dim, cond=10.0):
  """A symmetric positive definite float64 [dim, dim] matrix with condition number <= cond."""
  q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  return (q * np.exp(rng.uniform(0.0, np.log(cond), dim))) @ q.T


def w2_reference(mean_a, cov_a, mean_b, cov_b):
  """Eq. 5 in float64 with SciPy's Schur-based sqrtm, written exactly as the paper's formula."""
  root_a = scipy.linalg.sqrtm(cov_a).real
  cross = np.trace(scipy.linalg.sqrtm(root_a @ cov_b @ root_a).real)
  return np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross


def kl_reference(mean_a, cov_a, mean_b, cov_b):
  inv_b = np.linalg.inv(cov_b)
  diff = mean_b - mean_a
  return 0.5 * (
      np.trace(inv_b @ cov_a)
      + diff @ inv_b @ diff
      - len(mean_a)
      + np.linalg.slogdet(cov_b)[1]
      - np.linalg.slogdet(cov_a)[1]
  )


def f32(*arrays):
  return tuple(jnp.asarray(a, jnp.float32) for a in arrays)


# --------------------------------------------------------------------------------------------
# region_gaussians
# --------------------------------------------------------------------------------------------


def region_moments_reference(features, ids, num_regions, eps):
  """Loops in float64: per image and region, mean and ML covariance + eps I; empty -> 0, eps I."""
  batch, dim = features.shape[0], features.shape[-1]
  f = features.reshape(batch, -1, dim).astype(np.float64)
  r = ids.reshape(batch, -1)
  means = np.zeros((batch, num_regions, dim))
  covs = np.tile(eps * np.eye(dim), (batch, num_regions, 1, 1))
  counts = np.zeros((batch, num_regions), np.int64)
  for b in range(batch):
    for k in range(num_regions):
      x = f[b, r[b] == k]
      counts[b, k] = len(x)
      if len(x):
        means[b, k] = x.mean(0)
        covs[b, k] += (x - x.mean(0)).T @ (x - x.mean(0)) / len(x)
  return means, covs, counts


@pytest.fixture
def region_batch():
  """2 images of 6x8 pixels, D=5, R=6: region 0 large, 4 a single pixel, 5 empty; −1 and 7 (>= R)."""
  rng = np.random.default_rng(0)
  features = rng.normal(2.0, 1.5, (2, 6, 8, 5)).astype(np.float32)
  ids = rng.integers(-1, 4, (2, 6, 8)).astype(np.int32)
  ids[:, 0, 0] = 4
  ids[1, 5, 7] = 7  # Out of range: belongs to no region, like -1.
  return features, ids


@pytest.fixture(params=[None, 3], ids=["default_blocks", "blocks_of_3"])
def moment_block(request, monkeypatch):
  """The default block size (every test region fits one block), and blocks of 3 pixels: the large
  regions span many blocks, most of them with a padded last block."""
  if request.param is not None:
    monkeypatch.setattr(region_moments, "_MOMENT_BLOCK", request.param)
  return request.param


def test_region_gaussians_full_matches_reference(region_batch, moment_block):
  features, ids = region_batch
  means, covs, counts = gaussian.region_gaussians(features, ids, 6, eps=1e-3)
  ref_means, ref_covs, ref_counts = region_moments_reference(
      features, np.where(ids >= 6, -1, ids), 6, 1e-3
  )
  assert means.shape == (2, 6, 5) and covs.shape == (2, 6, 5, 5) and counts.dtype == jnp.int32
  np.testing.assert_array_equal(counts, ref_counts)
  np.testing.assert_allclose(means, ref_means, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(covs, ref_covs, rtol=1e-5, atol=1e-5)
  assert (counts[:, 4] == 1).all() and (counts[:, 5] == 0).all()
  np.testing.assert_allclose(covs[:, 4], np.tile(1e-3 * np.eye(5), (2, 1, 1)), atol=1e-6)
  np.testing.assert_array_equal(means[:, 5], 0.0)


def test_region_gaussians_diag_and_flat_layout_agree_with_full(region_batch):
  features, ids = region_batch
  _, covs, _ = gaussian.region_gaussians(features, ids, 6, eps=1e-3)
  means_d, var, counts_d = gaussian.region_gaussians(
      features.reshape(2, 48, 5), ids.reshape(2, 48), 6, covariance="diag", eps=1e-3, spatial_dims=1
  )
  np.testing.assert_allclose(var, np.diagonal(covs, axis1=-2, axis2=-1), rtol=1e-6)
  ref_means, _, ref_counts = region_moments_reference(features, np.where(ids >= 6, -1, ids), 6, 0)
  np.testing.assert_allclose(means_d, ref_means, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(counts_d, ref_counts)


def _naive_region_gaussians(features, ids, num_regions, eps):
  """One-hot moments left to JAX's autodiff: the reference for the hand-written VJP."""
  onehot = jax.nn.one_hot(ids, num_regions)
  n = jnp.maximum(onehot.sum(-2), 1.0)
  means = jnp.einsum("...pr,...pd->...rd", onehot, features) / n[..., None]
  centred = features[..., :, None, :] - means[..., None, :, :]  # [..., P, R, D]
  covs = jnp.einsum("...pr,...prd,...pre->...rde", onehot, centred, centred) / n[..., None, None]
  return means, covs + eps * jnp.eye(features.shape[-1])


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_region_gaussians_gradient_matches_autodiff_of_the_definition(
    region_batch, covariance, moment_block
):
  features, ids = region_batch
  features, flat_ids = features.reshape(2, 48, 5), np.where(ids >= 6, -1, ids).reshape(2, 48)
  rng = np.random.default_rng(9)
  w_mean = rng.normal(size=(2, 6, 5)).astype(np.float32)
  w_cov = rng.normal(size=(2, 6, 5, 5)).astype(np.float32)  # Not symmetric on purpose.
  if covariance == "diag":
    w_cov = w_cov * np.eye(5, dtype=np.float32)

  def loss(f, fn):
    means, covs = fn(f)
    covs = covs if covs.ndim == 4 else jax.vmap(jax.vmap(jnp.diag))(covs)
    return jnp.sum(w_mean * means) + jnp.sum(w_cov * jnp.sin(covs))

  ours = lambda f: gaussian.region_gaussians(
      f, jnp.asarray(flat_ids), 6, covariance=covariance, eps=1e-3, spatial_dims=1
  )[:2]
  naive = lambda f: _naive_region_gaussians(f, jnp.asarray(flat_ids), 6, 1e-3)
  grad = jax.grad(loss)(jnp.asarray(features), ours)
  expected = jax.grad(loss)(jnp.asarray(features), naive)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
  assert (np.asarray(grad)[flat_ids < 0] == 0).all()


def test_region_gaussians_two_pass_keeps_small_spread_on_large_mean():
  """Features of mean 1000 and spread 0.01 (trained activations look like this): a one-pass
  E[ffᵀ] − μμᵀ in float32 would lose every digit of the covariance."""
  rng = np.random.default_rng(1)
  features = (1000.0 + 0.01 * rng.normal(size=(1, 16, 16, 3))).astype(np.float32)
  ids = np.zeros((1, 16, 16), np.int32)
  _, covs, _ = gaussian.region_gaussians(features, ids, 1, eps=0.0)
  _, ref, _ = region_moments_reference(features, ids, 1, 0.0)
  np.testing.assert_allclose(covs[0, 0], ref[0, 0], rtol=2e-3, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(covariance="low_rank"), "covariance must be one of"),
        (dict(eps=-1.0), "eps must be >= 0"),
        (dict(spatial_dims=3), "spatial_dims must be 1"),
        (dict(num_regions=0), "num_regions must be a positive int"),
    ],
)
def test_region_gaussians_rejects_bad_arguments(kwargs, match):
  args = dict(features=np.zeros((4, 4, 2), np.float32), region_ids=np.zeros((4, 4), np.int32))
  num_regions = kwargs.pop("num_regions", 2)
  with pytest.raises(ValueError, match=match):
    gaussian.region_gaussians(args["features"], args["region_ids"], num_regions, **kwargs)


def test_region_gaussians_rejects_mismatched_inputs():
  with pytest.raises(ValueError, match=r"must be \[\.\.\., H, W, D\] and \[\.\.\., H, W\]"):
    gaussian.region_gaussians(np.zeros((4, 4, 2), np.float32), np.zeros((4, 5), np.int32), 2)
  with pytest.raises(ValueError, match="region_ids must be integers"):
    gaussian.region_gaussians(np.zeros((4, 4, 2), np.float32), np.zeros((4, 4), np.float32), 2)
  with pytest.raises(ValueError, match="features must be floating point"):
    gaussian.region_gaussians(np.zeros((4, 4, 2), np.int32), np.zeros((4, 4), np.int32), 2)


# --------------------------------------------------------------------------------------------
# W2 and KL values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dim", [4, 16, 32, 64])
def test_wasserstein2_matches_scipy(method, dim):
  rng = np.random.default_rng(dim)
  for _ in range(3):
    mean_a, mean_b = rng.normal(size=dim), rng.normal(size=dim)
    cov_a, cov_b = random_cov(rng, dim), random_cov(rng, dim)
    value = gaussian.wasserstein2(*f32(mean_a, cov_a, mean_b, cov_b), sqrt_method=method)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(value), w2_reference(mean_a, cov_a, mean_b, cov_b), rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_wasserstein2_identity_symmetry_and_broadcasting(method):
  rng = np.random.default_rng(3)
  means = rng.normal(size=(4, 8))
  covs = np.stack([random_cov(rng, 8, cond=100.0) for _ in range(4)])
  means, covs = f32(means, covs)
  w2 = lambda a, b, c, d: gaussian.wasserstein2(a, b, c, d, sqrt_method=method)
  self_distance = w2(means, covs, means, covs)
  assert self_distance.shape == (4,)
  np.testing.assert_array_less(np.asarray(self_distance), 1e-5 * np.trace(covs, axis1=1, axis2=2))
  ab = w2(means[:, None], covs[:, None], means[None], covs[None])  # [4, 4] by broadcasting.
  np.testing.assert_allclose(ab, ab.T, rtol=1e-5, atol=1e-5)
  assert (np.asarray(ab)[~np.eye(4, dtype=bool)] > 0.1).all()


@pytest.mark.parametrize("method", METHODS)
def test_wasserstein2_diag_equals_full_and_commuting_closed_form(method):
  rng = np.random.default_rng(4)
  mean_a, mean_b = rng.normal(size=6), rng.normal(size=6)
  var_a, var_b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
  diag = gaussian.wasserstein2(*f32(mean_a, var_a, mean_b, var_b))
  full = gaussian.wasserstein2(
      *f32(mean_a, np.diag(var_a), mean_b, np.diag(var_b)), sqrt_method=method
  )
  closed = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  np.testing.assert_allclose([float(diag), float(full)], [closed, closed], rtol=1e-5)
  # Commuting covariances (shared eigenvectors): W2 = ‖Δμ‖² + ‖Σ_a^{1/2} − Σ_b^{1/2}‖_F².
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  cov_a, cov_b = (q * var_a) @ q.T, (q * var_b) @ q.T
  root_diff = (q * (np.sqrt(var_a) - np.sqrt(var_b))) @ q.T
  closed = np.sum((mean_a - mean_b) ** 2) + np.sum(root_diff**2)
  value = gaussian.wasserstein2(*f32(mean_a, cov_a, mean_b, cov_b), sqrt_method=method)
  np.testing.assert_allclose(float(value), closed, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_pairwise_wasserstein2_matches_every_pair(method):
  rng = np.random.default_rng(5)
  means_a, means_b = rng.normal(size=(2, 5, 8)), rng.normal(size=(2, 3, 8))
  covs_a = np.stack([[random_cov(rng, 8, 1e3) for _ in range(5)] for _ in range(2)])
  covs_b = np.stack([[random_cov(rng, 8, 1e3) for _ in range(3)] for _ in range(2)])
  value = gaussian.pairwise_wasserstein2(*f32(means_a, covs_a, means_b, covs_b), sqrt_method=method)
  assert value.shape == (2, 5, 3)
  ref = [
      [
          [w2_reference(means_a[b, i], covs_a[b, i], means_b[b, j], covs_b[b, j]) for j in range(3)]
          for i in range(5)
      ]
      for b in range(2)
  ]
  np.testing.assert_allclose(value, ref, rtol=1e-4)
  var_a, var_b = rng.uniform(0.1, 2.0, (5, 8)), rng.uniform(0.1, 2.0, (3, 8))
  diag = gaussian.pairwise_wasserstein2(*f32(means_a[0], var_a, means_b[0], var_b))
  full = gaussian.pairwise_wasserstein2(
      *f32(
          means_a[0],
          np.apply_along_axis(np.diag, -1, var_a),
          means_b[0],
          np.apply_along_axis(np.diag, -1, var_b),
      ),
      sqrt_method=method,
  )
  np.testing.assert_allclose(diag, full, rtol=1e-5)


@pytest.mark.parametrize("chunk_pairs", [None, 5], ids=["one_chunk", "chunks_of_5"])
def test_newton_schulz_stages_give_every_pair_its_iterations(chunk_pairs, monkeypatch):
  """96 pairs, a few of them ill-conditioned (they need ~14 iterations, most ~5): the staged
  iteration must still take each pair's nuclear norm to float32 accuracy (vs float64 SVD). Also
  in chunks of 5 pairs (every stage's set split, the last chunk padded with identities)."""
  if chunk_pairs is not None:
    monkeypatch.setattr(gaussian, "_NS_CHUNK_BYTES", chunk_pairs * 6 * 6 * 4)
  rng = np.random.default_rng(11)
  dim, n = 6, 96
  conds = np.full(n, 3.0)
  conds[np.arange(n) % 11 == 5] = 1e2
  conds[[0, 40, 80]] = 1e5  # Fewer than the last stage's 6 pairs: they need the most.
  a = np.stack([random_cov(rng, dim, c) for c in conds])
  b = np.stack([random_cov(rng, dim, 3.0) for _ in range(n)])
  m = np.stack([scipy.linalg.sqrtm(y).real @ scipy.linalg.sqrtm(x).real for x, y in zip(a, b)])
  wa, wb = np.linalg.eigvalsh(a), np.linalg.eigvalsh(b)
  upper = np.sqrt(wa[:, -1] * wb[:, -1]) * 1.01
  lower = np.sqrt(wa[:, 0] * wb[:, 0])
  need = np.asarray(gaussian._ns_iterations(jnp.asarray(lower / upper, jnp.float32)))
  assert need.max() >= 2 * np.median(need)  # The ill-conditioned pairs do need more.
  q = gaussian._polar_newton_schulz(*f32(m, upper, lower))
  nuclear = np.sum(np.asarray(q, np.float64) * m, axis=(-2, -1))
  np.testing.assert_allclose(nuclear, np.linalg.svd(m, compute_uv=False).sum(-1), rtol=2e-6)


def _ns_count_float64(ell0: float) -> int:
  """The scaled Newton–Schulz bound's recurrence in float64: iterations until ℓ ≥ 1 − 1e-6."""
  ell, k = ell0, 0
  while ell < 1 - 1e-6 and k < 40:
    alpha = np.sqrt(3.0 / (1.0 + ell + ell * ell))
    ell, k = min(0.5 * alpha * ell * (3.0 - (alpha * ell) ** 2), 1.0), k + 1
  return k


def test_newton_schulz_iterations_follow_the_bounds_and_converge():
  """The counts equal a float64 replay of the recurrence from the eigenvalue bounds (±1 where
  float32 eigenvalues round across a step), grow with the conditioning, and are enough: that many
  float64 iterations of M / upper leave every singular value within 2e-6 of 1."""
  rng = np.random.default_rng(12)
  dim = 5
  conds = [1.5, 10.0, 1e3, 1e5]
  a = np.stack([[random_cov(rng, dim, c) for c in conds] for _ in range(2)])  # [2, 4, D, D]
  b = np.stack([random_cov(rng, dim, c) for c in conds[:3]])  # [3, D, D]: broadcast over 2
  need = np.asarray(gaussian.newton_schulz_iterations(*f32(a, b[None])))
  assert need.shape == (2, 4, 3) and need.dtype == np.int32
  wa, wb = np.linalg.eigvalsh(a), np.linalg.eigvalsh(b)
  for n, i, j in np.ndindex(*need.shape):
    upper = np.sqrt(wa[n, i, -1] * wb[j, -1]) * 1.01
    ell0 = np.sqrt(wa[n, i, 0] * wb[j, 0]) / upper
    assert abs(int(need[n, i, j]) - _ns_count_float64(ell0)) <= 1, (n, i, j)
    x = scipy.linalg.sqrtm(b[j]).real @ scipy.linalg.sqrtm(a[n, i]).real / upper
    ell = ell0
    for _ in range(need[n, i, j]):
      alpha = np.sqrt(3.0 / (1.0 + ell + ell * ell))
      x = 0.5 * alpha * x @ (3 * np.eye(dim) - alpha**2 * x.T @ x)
      ell = min(0.5 * alpha * ell * (3.0 - (alpha * ell) ** 2), 1.0)
    np.testing.assert_allclose(np.linalg.svd(x, compute_uv=False), 1.0, atol=2e-6)
  assert np.all(np.diff(need[:, :, 0], axis=1) > 0)  # Worse conditioned Σ_a: more iterations.
  assert np.all(need[:, 0, 0] < need[:, -1, 0])


def test_newton_schulz_iterations_rejects_bad_shapes():
  with pytest.raises(ValueError, match=r"\[\.\.\., R, D, D\]"):
    gaussian.newton_schulz_iterations(jnp.ones((4, 3)), jnp.ones((4, 3)))
  with pytest.raises(ValueError, match="got float32"):
    gaussian.newton_schulz_iterations(jnp.ones((2, 3, 3)), jnp.ones((2, 4, 4)))


def test_kl_divergence_matches_closed_form():
  rng = np.random.default_rng(6)
  for dim in (3, 16):
    mean_a, mean_b = rng.normal(size=dim), rng.normal(size=dim)
    cov_a, cov_b = random_cov(rng, dim, 50.0), random_cov(rng, dim, 50.0)
    value = gaussian.kl_divergence(*f32(mean_a, cov_a, mean_b, cov_b))
    np.testing.assert_allclose(float(value), kl_reference(mean_a, cov_a, mean_b, cov_b), rtol=1e-4)
    self_kl = gaussian.kl_divergence(*f32(mean_a, cov_a, mean_a, cov_a))
    assert abs(float(self_kl)) < 1e-4
  var_a, var_b = rng.uniform(0.1, 3.0, (4, 5)), rng.uniform(0.1, 3.0, (4, 5))
  means = rng.normal(size=(2, 4, 5))
  diag = gaussian.kl_divergence(*f32(means[0], var_a, means[1], var_b))
  ref = [
      kl_reference(means[0, i], np.diag(var_a[i]), means[1, i], np.diag(var_b[i])) for i in range(4)
  ]
  np.testing.assert_allclose(diag, ref, rtol=1e-5)


@pytest.mark.parametrize(
    "shapes, match",
    [
        (((3,), (3, 3), (3,), (3,)), "must both be full or both diagonal"),
        (((3,), (2, 2), (3,), (3, 3)), r"a: a mean \[\.\.\., D\] needs"),
        (((3,), (3, 3), (4,), (4, 4)), "dimensions differ"),
    ],
)
def test_distances_reject_mismatched_shapes(shapes, match):
  arrays = [np.ones(s, np.float32) for s in shapes]
  for fn in (gaussian.wasserstein2, gaussian.kl_divergence):
    with pytest.raises(ValueError, match=match):
      fn(*arrays)
  with pytest.raises(ValueError, match="sqrt_method must be one of"):
    gaussian.wasserstein2(*f32(np.ones(3), np.eye(3), np.ones(3), np.eye(3)), sqrt_method="svd")


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_wasserstein2_gradient_matches_float64_finite_differences(method):
  """Directional derivatives of W2 in (μ_a, Σ_a, Σ_b) against central differences of the SciPy
  reference in float64."""
  rng = np.random.default_rng(7)
  dim = 6
  mean_a, mean_b = rng.normal(size=dim), rng.normal(size=dim)
  cov_a, cov_b = random_cov(rng, dim, 20.0), random_cov(rng, dim, 20.0)
  d_mean = rng.normal(size=dim)
  d_cov_a, d_cov_b = (lambda x: x + x.T)(rng.normal(size=(dim, dim))), np.eye(dim)
  grads = jax.grad(
      lambda ma, ca, cb: gaussian.wasserstein2(ma, ca, jnp.float32(mean_b), cb, sqrt_method=method),
      argnums=(0, 1, 2),
  )(*f32(mean_a, cov_a, cov_b))
  h = 1e-5
  for grad, direction, perturb in [
      (grads[0], d_mean, lambda t: (mean_a + t * d_mean, cov_a, cov_b)),
      (grads[1], d_cov_a, lambda t: (mean_a, cov_a + t * d_cov_a, cov_b)),
      (grads[2], d_cov_b, lambda t: (mean_a, cov_a, cov_b + t * d_cov_b)),
  ]:
    (ma, ca, cb), (ma2, ca2, cb2) = perturb(h), perturb(-h)
    numeric = (w2_reference(ma, ca, mean_b, cb) - w2_reference(ma2, ca2, mean_b, cb2)) / (2 * h)
    np.testing.assert_allclose(np.sum(np.asarray(grad) * direction), numeric, rtol=1e-3, atol=1e-4)


def infonce_w2(
    features_t, features_s, region_ids, num_regions, method, covariance="full", eps=1e-4
):
  """The contrast's shape of computation: region i of t against every region of s, positive i."""
  mean_t, cov_t, counts = gaussian.region_gaussians(
      features_t, region_ids, num_regions, covariance=covariance, eps=eps
  )
  mean_s, cov_s, _ = gaussian.region_gaussians(
      features_s, region_ids, num_regions, covariance=covariance, eps=eps
  )
  logits = -gaussian.pairwise_wasserstein2(mean_t, cov_t, mean_s, cov_s, sqrt_method=method)
  valid = counts > 0
  logits = jnp.where(valid[..., None, :], logits, -jnp.inf)
  nll = -jnp.diagonal(jax.nn.log_softmax(logits, axis=-1), axis1=-2, axis2=-1)
  return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_gradients_finite_on_degenerate_regions(method, covariance):
  """Identical features (identical Gaussians across the two maps), rank-deficient regions (fewer
  pixels than D), single-pixel regions and empty regions, under jit(vmap(grad))."""
  rng = np.random.default_rng(8)
  dim, num_regions = 8, 6
  ids = np.full((2, 8, 8), -1, np.int32)
  ids[:, :4] = 0  # 32 pixels: full rank in D = 8.
  ids[:, 4, :3] = 1  # 3 pixels: rank 2 < D.
  ids[:, 5, 0] = 2  # a single pixel.
  ids[:, 6] = 3  # 8 identical pixels: zero covariance before shrinkage.
  # Regions 4 and 5 are empty.
  features = rng.normal(size=(2, 8, 8, dim)).astype(np.float32)
  features[:, 6] = 0.5
  for other in (features, rng.normal(size=features.shape).astype(np.float32)):
    loss = lambda ft, fs: infonce_w2(ft, fs, ids[0], num_regions, method, covariance)
    grad_fn = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))
    grads = grad_fn(jnp.asarray(features), jnp.asarray(other))
    for g in grads:
      assert np.isfinite(np.asarray(g)).all()
    assert float(np.abs(np.asarray(grads[0])).max()) > 0


@pytest.mark.parametrize("method", METHODS)
def test_gradients_finite_for_identical_and_singular_covariances(method):
  eye, zeros = jnp.eye(4), jnp.zeros(4)
  singular = jnp.asarray(np.diag([2.0, 1.0, 0.0, 0.0]), jnp.float32)
  for cov_a, cov_b in [(eye, eye), (singular, singular), (singular, eye), (1e-6 * eye, eye)]:
    grads = jax.grad(
        lambda ca, cb, m: gaussian.wasserstein2(m, ca, zeros, cb, sqrt_method=method), (0, 1, 2)
    )(cov_a, cov_b, zeros + 0.5)
    for g in grads:
      assert np.isfinite(np.asarray(g)).all(), (cov_a, cov_b, g)
