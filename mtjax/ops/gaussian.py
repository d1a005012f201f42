"""Region Gaussians and the distances between Gaussians: squared 2-Wasserstein (W2) and KL.

Region-aware distribution contrast (Li et al., ECCV 2024, Sec. 3; docs/methods.md, "Region-aware distribution contrast")
models the mapped features of each region as a Gaussian N(μ, Σ) and compares two regions by the
squared 2-Wasserstein distance (Eq. 5):

    W2(a, b) = ‖μ_a − μ_b‖² + Tr Σ_a + Tr Σ_b − 2 Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}).

Every function here is pure jnp, float32-safe, and usable under the caller's ``jax.jit``,
``jax.vmap`` and ``jax.grad``; all shapes are static. Conventions: features float [..., P, D] or
[..., H, W, D]; region ids int [..., P] or [..., H, W], −1 = no region; a *full* covariance is
[..., D, D] (symmetric positive semi-definite), a *diagonal* one is [..., D] (the variances).

**The cross term.** Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}) is the nuclear norm ‖M‖_* (sum of singular
values) of M = Σ_b^{1/2} Σ_a^{1/2}, since MᵀM = Σ_a^{1/2} Σ_b Σ_a^{1/2}. The square root of each
covariance is taken once (``eigh``; for R + S Gaussians, not R·S pairs), so a pair costs one D x D
matmul plus the nuclear norm of M. Two ways to get the nuclear norm (``sqrt_method``):

* ``"newton_schulz"``: the polar factor Q of M (M = Q (MᵀM)^{1/2}) by the scaled Newton–Schulz
  iteration X ← ½ αX (3I − α² XᵀX) (Chen & Chow, "A stable scaling of Newton–Schulz for improving
  the sign function computation of a Hermitian matrix", 2014): batched matmuls only. It starts
  from M / u with u ≥ σ_max(M) and a lower bound ℓ ≤ σ_min(M) / u, both from the eigenvalues of Σ_a
  and Σ_b (σ_max(M) ≤ (λ_max,a λ_max,b)^{1/2}, σ_min(M) ≥ (λ_min,a λ_min,b)^{1/2}); α = (3 / (1 + ℓ +
  ℓ²))^{1/2} maps [ℓ, 1] onto [ℓ', 1] with ℓ' = ½ αℓ (3 − α²ℓ²), about 2.6ℓ while ℓ is small, then
  quadratically to 1. Each pair is iterated until its ℓ ≥ 1 − 1e-6 (at most 40 iterations,
  reached only below ℓ ≈ 1e-16); the count follows from ℓ alone, so it is known before iterating,
  and the pairs that need the most run in stages over shrinking sets (``_polar_newton_schulz``). Then ‖M‖_* = Tr(QᵀM), to within a relative 1 − ℓ; the
  value is stationary in Q, so Q's own rounding enters only to second order.
* ``"eigh"``: the eigenvalues of MᵀM per pair (LAPACK / cuSOLVER), ‖M‖_* = Σ sqrt(λ). Exact up to
  rounding, but a batched small-matrix eigensolver is slow on every backend; the reference.

``"auto"`` picks ``"newton_schulz"`` on every backend: measured fastest on the CPU
(tools/benchmark_gaussian.py, docs/performance.md).

**Gradients** (custom VJPs, finite wherever the inputs are finite):

* Σ ↦ Σ^{1/2} by ``eigh``: the Daleckii–Krein derivative, whose divided differences for the square
  root are (√λ_i − √λ_j) / (λ_i − λ_j) = 1 / (√λ_i + √λ_j). No eigenvalue gap is divided by, so
  repeated eigenvalues (identical covariances, εI of an empty region) are harmless; only a pair of
  exactly zero eigenvalues (a singular Σ, shrinkage ε = 0) gets a zero (sub)gradient.
* M ↦ ‖M‖_*: its derivative is the polar factor Q = M (MᵀM)^{−1/2}, already computed by
  Newton–Schulz; the ``"eigh"`` path forms it from the eigenvectors, with directions whose singular
  value is below 3.5e-4 σ_max (the square root of float32's epsilon) given zero, a subgradient.

**One LAPACK call per distance.** Each distance function factors all its covariances (both
sets) in a single batched ``eigh`` (or ``cholesky`` for KL). On JAX 0.10.2's CPU runtime a jitted
program with two batched eigendecompositions that can run concurrently intermittently never
completes (every XLA worker idle: with a separate ``eigh`` per set, 3 of 3 runs of
``tools/benchmark_gaussian.py``'s R = 32, D = 32 step hung within 8 steps; with one, 0 of 7).
In your own CPU train step, prefer one call over stacked or vmapped inputs (task pairs, images)
to several separate calls.

Cost for R x S pairs in dimension D: O((R + S) D³) for the square roots, O(R S D³ k) for the
nuclear norms with k Newton–Schulz iterations (two batched matmuls each).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from mtjax.ops.region_moments import COVARIANCES, region_gaussians  # noqa: F401 (public API)

__all__ = [
    "COVARIANCES",
    "SQRT_METHODS",
    "kl_divergence",
    "newton_schulz_iterations",
    "pairwise_kl_divergence",
    "pairwise_wasserstein2",
    "region_gaussians",
    "sqrtm_psd",
    "wasserstein2",
]


Array = jax.Array

SQRT_METHODS = ("auto", "eigh", "newton_schulz")

# Matmuls at full float32 precision on every backend (GPU TF32 / TPU bf16 passes would cost the
# W2 its accuracy: the cross term cancels against the traces).
_HIGHEST = lax.Precision.HIGHEST
# Newton–Schulz stops once the lower bound on every singular value of Q is within this of 1.
_NS_TOL = 1e-6
_NS_MAX_ITERS = 40
_NS_UNROLL = 2
# Stages of the Newton–Schulz iteration: each iterates 1 / _NS_STAGE_SHRINK of the previous set,
# down to sets of _NS_MIN_STAGE pairs.
_NS_STAGE_SHRINK = 2
# On the CPU the iteration runs over chunks of pairs whose [chunk, D, D] arrays are this large.
_NS_CHUNK_BYTES = 2**20
_NS_MIN_STAGE = 16
# The eigenvalue bound on σ_max(M) is inflated by this factor so that rounding in the eigenvalues
# never puts a singular value above 1 (above √3 the iteration would diverge).
_NS_UPPER_SLACK = 1.01
# Singular values below this fraction of σ_max get a zero gradient on the "eigh" path.
_EIGH_GRAD_RTOL = 3.5e-4


def _mT(x: Array) -> Array:
  return jnp.swapaxes(x, -1, -2)


def _matmul(a: Array, b: Array) -> Array:
  return jnp.matmul(a, b, precision=_HIGHEST)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _resolve_sqrt_method(sqrt_method: str) -> str:
  _check_choice("sqrt_method", sqrt_method, SQRT_METHODS)
  return "newton_schulz" if sqrt_method == "auto" else sqrt_method


# --------------------------------------------------------------------------------------------
# Matrix functions with stable derivatives
# --------------------------------------------------------------------------------------------


def _sqrt_psd(cov: Array) -> tuple[Array, Array, Array, Array]:
  """(S, eigenvalues w, eigenvectors V, √max(w, 0)) of symmetric PSD ``cov``."""
  w, v = jnp.linalg.eigh(cov)
  s = jnp.sqrt(jnp.maximum(w, 0.0))
  return _matmul(v * s[..., None, :], _mT(v)), w, v, s


@jax.custom_vjp
def sqrtm_psd(cov: Array) -> tuple[Array, Array]:
  """Principal square root of symmetric PSD matrices, and their eigenvalues.

  Args:
    cov: float [..., D, D], symmetric positive semi-definite (only the symmetric part is read;
      eigenvalues below 0 from rounding are clamped to 0).

  Returns:
    ``(S [..., D, D], w [..., D])``: S = V diag(√max(w, 0)) Vᵀ and the eigenvalues w, ascending.

  Derivative: Daleckii–Krein, dS = V ((Vᵀ dΣ V) ∘ K) Vᵀ with K_ij = 1 / (√λ_i + √λ_j) (0 where both
  are 0), dw_k = v_kᵀ dΣ v_k: finite for repeated eigenvalues (module docstring).
  """
  s_mat, w, _, _ = _sqrt_psd(cov)
  return s_mat, w


def _sqrtm_psd_fwd(cov):
  s_mat, w, v, s = _sqrt_psd(cov)
  return (s_mat, w), (v, s)


def _sqrtm_psd_bwd(res, cotangents):
  v, s = res
  g_s, g_w = cotangents
  g_s = 0.5 * (g_s + _mT(g_s))
  denom = s[..., :, None] + s[..., None, :]
  loewner = jnp.where(denom > 0, 1.0 / jnp.where(denom > 0, denom, 1.0), 0.0)
  inner = _matmul(_mT(v), _matmul(g_s, v)) * loewner
  inner = inner + g_w[..., None, :] * jnp.eye(s.shape[-1], dtype=s.dtype)
  return (_matmul(v, _matmul(inner, _mT(v))),)


sqrtm_psd.defvjp(_sqrtm_psd_fwd, _sqrtm_psd_bwd)


def _stack_sets(x_a: Array, x_b: Array, item_ndim: int) -> Array:
  """x_a [..., R, *item] and x_b [..., S, *item] as one [..., R + S, *item] array (leading axes
  broadcast). The distances factor both sets' covariances in ONE LAPACK call: on JAX 0.10.2's CPU
  runtime, two batched eigendecompositions or Cholesky factorizations that can run concurrently
  in one jitted program intermittently never complete (module docstring)."""
  lead = jnp.broadcast_shapes(x_a.shape[: -item_ndim - 1], x_b.shape[: -item_ndim - 1])
  x_a = jnp.broadcast_to(x_a, lead + x_a.shape[-item_ndim - 1 :])
  x_b = jnp.broadcast_to(x_b, lead + x_b.shape[-item_ndim - 1 :])
  return jnp.concatenate([x_a, x_b], axis=-item_ndim - 1)


def _sqrtm_sets(covs_a: Array, covs_b: Array):
  """``sqrtm_psd`` of [..., R, D, D] and [..., S, D, D] in one call: (s_a, w_a, s_b, w_b)."""
  r = covs_a.shape[-3]
  s_all, w_all = sqrtm_psd(_stack_sets(covs_a, covs_b, 2))
  return s_all[..., :r, :, :], w_all[..., :r, :], s_all[..., r:, :, :], w_all[..., r:, :]


def _bmm(a: Array, b: Array, contract_b: int) -> Array:
  """Batched [N, D, D] products a @ b (``contract_b=1``) or a @ bᵀ (``contract_b=2``), as plain
  dot_generals: on XLA's CPU backend a transposed left operand, several batch axes or an
  elementwise producer fused into the operand each make the batched matmul 1.5-2.5x slower."""
  return lax.dot_general(a, b, (((2,), (contract_b,)), ((0,), (0,))), precision=_HIGHEST)


def _ns_scalar_step(ell: Array) -> tuple[Array, Array]:
  """One scaled Newton–Schulz step of the lower bound: (α, ℓ')."""
  alpha = jnp.sqrt(3.0 / (1.0 + ell + ell * ell))
  return alpha, jnp.minimum(0.5 * alpha * ell * (3.0 - (alpha * ell) ** 2), 1.0)


def _ns_iterations(ell: Array) -> Array:
  """int32 [N]: the iterations each pair needs for ℓ ≥ 1 − tol (the bound's own recurrence)."""

  def cond(state):
    k, ell, _ = state
    return (k < _NS_MAX_ITERS) & jnp.any(ell < 1.0 - _NS_TOL)

  def body(state):
    k, ell, need = state
    need = jnp.where(ell < 1.0 - _NS_TOL, k + 1, need)
    return k + 1, _ns_scalar_step(ell)[1], need

  return lax.while_loop(cond, body, (jnp.int32(0), ell, jnp.zeros(ell.shape, jnp.int32)))[2]


def _ns_step(x: Array, ell: Array) -> tuple[Array, Array]:
  """One scaled Newton–Schulz iteration of x [N, D, D] with lower bounds ell [N]."""
  alpha, ell_next = _ns_scalar_step(ell)
  # ½ αX (3I − α² XᵀX) = ((3α/2) I − (α³/2) XXᵀ) X: the update rides on the small XXᵀ operand
  # instead of an elementwise pass over X and XXᵀX.
  eye = jnp.eye(x.shape[-1], dtype=x.dtype)
  h = (1.5 * alpha)[:, None, None] * eye - (0.5 * alpha**3)[:, None, None] * _bmm(x, x, 2)
  return _bmm(h, x, 1), ell_next


def _ns_iterate_all(x: Array, ell: Array, iterations: Array) -> tuple[Array, Array]:
  """``iterations`` (int32 scalar ≥ 0) scaled Newton–Schulz iterations of x [N, D, D] with bounds
  ell [N]: _NS_UNROLL per loop trip, then the remainder one at a time."""

  def unrolled(_, state):
    # _NS_UNROLL iterations per trip: on XLA's CPU backend 13 iterations at R = S = D = 32 took
    # 39 ms unrolled and 69 ms as a loop of single iterations; iterating past convergence
    # changes nothing (Q is a fixed point: α = 1 once ℓ = 1).
    for _ in range(_NS_UNROLL):
      state = _ns_step(*state)
    return state

  state = lax.fori_loop(0, iterations // _NS_UNROLL, unrolled, (x, ell))
  return lax.fori_loop(0, iterations % _NS_UNROLL, lambda _, st: _ns_step(*st), state)


def _ns_iterate(x: Array, ell: Array, iterations: Array) -> tuple[Array, Array]:
  """``_ns_iterate_all`` on the CPU in chunks of _NS_CHUNK_BYTES per [chunk, D, D] array, one
  chunk after another (``lax.map``), so that X, XXᵀ and the update stay in cache; elsewhere on
  all pairs at once. A partial last chunk is padded with identities (ℓ = 1: fixed points)."""
  n, dim = x.shape[0], x.shape[-1]
  chunk = max(_NS_CHUNK_BYTES // (dim * dim * x.dtype.itemsize), 1)
  if jax.default_backend() != "cpu" or n <= chunk:
    return _ns_iterate_all(x, ell, iterations)
  pad = -n % chunk
  x = jnp.concatenate([x, jnp.broadcast_to(jnp.eye(dim, dtype=x.dtype), (pad, dim, dim))])
  ell = jnp.concatenate([ell, jnp.ones((pad,), ell.dtype)])
  x, ell = lax.map(
      lambda xs: _ns_iterate_all(*xs, iterations),
      (x.reshape(-1, chunk, dim, dim), ell.reshape(-1, chunk)),
  )
  return x.reshape(-1, dim, dim)[:n], ell.reshape(-1)[:n]


def _polar_newton_schulz(m: Array, upper: Array, lower: Array) -> Array:
  """Polar factor of m [..., D, D] given upper ≥ σ_max(m) > 0 and 0 ≤ lower ≤ σ_min(m) [...].

  Each pair needs k(ℓ) iterations, known in advance from its bound ℓ (``_ns_iterations``), and a
  few ill-conditioned pairs need far more than the rest (at R = S = D = 32 in the benchmark: 13
  for the worst, 5.7 on average). So the iteration runs in stages over shrinking sets: stage j
  iterates the N / 2^j pairs that need the most until every pair outside the next, half as large,
  set has converged; the last stage until all have. Sets are gathered and scattered back (static
  shapes); a pair iterated past its need is unchanged (a fixed point). Halving rather than
  quartering the sets, with no rounding up to whole loop trips, runs the 1,024 pairs 6,208
  iterations instead of 7,232 (5,781 needed; NumPy replay of the stages) and took
  the benchmark's step at R = S = D = 32 from 24.9 to 22.9 ms (interleaved A/B, one process)."""
  batch, dim = m.shape[:-2], m.shape[-1]
  x = m.reshape(-1, dim, dim) / upper.reshape(-1, 1, 1)
  ell = jnp.clip(lower / upper, 0.0, 1.0).reshape(-1)
  n = x.shape[0]
  need = _ns_iterations(ell)
  order = jnp.argsort(-need)  # Most iterations first.
  ranked = need[order]
  sizes = [n]
  while sizes[-1] > _NS_MIN_STAGE:
    sizes.append(max(sizes[-1] // _NS_STAGE_SHRINK, 1))
  done = jnp.int32(0)
  for j, size in enumerate(sizes):
    # Iterations after which every pair outside the next stage's set has converged.
    target = ranked[sizes[j + 1]] if j + 1 < len(sizes) else ranked[0]
    iterations = jnp.maximum(target - done, 0)
    if size == n:
      x, ell = _ns_iterate(x, ell, iterations)
    else:
      idx = order[:size]
      xs, ells = _ns_iterate(x[idx], ell[idx], iterations)
      x, ell = x.at[idx].set(xs), ell.at[idx].set(ells)
    done = done + iterations
  return x.reshape(*batch, dim, dim)


@jax.custom_vjp
def _nuclear_norm_newton_schulz(m: Array, upper: Array, lower: Array) -> Array:
  return jnp.sum(_polar_newton_schulz(m, upper, lower) * m, axis=(-2, -1))


def _nn_ns_fwd(m, upper, lower):
  q = _polar_newton_schulz(m, upper, lower)
  return jnp.sum(q * m, axis=(-2, -1)), q


def _nn_ns_bwd(q, g):
  shape = q.shape[:-2]
  return g[..., None, None] * q, jnp.zeros(shape, q.dtype), jnp.zeros(shape, q.dtype)


_nuclear_norm_newton_schulz.defvjp(_nn_ns_fwd, _nn_ns_bwd)


def _singular_values_eigh(m: Array) -> tuple[Array, Array]:
  w, v = jnp.linalg.eigh(_matmul(_mT(m), m))
  return jnp.sqrt(jnp.maximum(w, 0.0)), v


@jax.custom_vjp
def _nuclear_norm_eigh(m: Array) -> Array:
  return jnp.sum(_singular_values_eigh(m)[0], axis=-1)


def _nn_eigh_fwd(m):
  sv, v = _singular_values_eigh(m)
  return jnp.sum(sv, axis=-1), (m, sv, v)


def _nn_eigh_bwd(res, g):
  m, sv, v = res
  keep = sv > _EIGH_GRAD_RTOL * jnp.max(sv, axis=-1, keepdims=True)
  inv = jnp.where(keep, 1.0 / jnp.where(keep, sv, 1.0), 0.0)
  q = _matmul(m, _matmul(v * inv[..., None, :], _mT(v)))  # M (MᵀM)^{-1/2}: the polar factor.
  return (g[..., None, None] * q,)


_nuclear_norm_eigh.defvjp(_nn_eigh_fwd, _nn_eigh_bwd)


def _cross_term(m, w_a, w_b, method: str) -> Array:
  """Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}) = ‖M‖_* for M = S_b S_a [..., D, D], given the eigenvalues
  w_a, w_b [..., D] of Σ_a, Σ_b (broadcastable to M's leading shape)."""
  if method == "eigh":
    return _nuclear_norm_eigh(m)
  return _nuclear_norm_newton_schulz(m, *_ns_bounds(w_a, w_b))


def _ns_bounds(w_a: Array, w_b: Array) -> tuple[Array, Array]:
  """(upper ≥ σ_max(M), lower ≤ σ_min(M)) of M = S_b S_a from the ascending eigenvalues w_a, w_b
  [..., D] of Σ_a, Σ_b (no gradient); Σ_a = 0 or Σ_b = 0 (M = 0) gets (1, 0)."""
  w_a, w_b = lax.stop_gradient(jnp.maximum(w_a, 0.0)), lax.stop_gradient(jnp.maximum(w_b, 0.0))
  upper = jnp.sqrt(w_a[..., -1] * w_b[..., -1]) * _NS_UPPER_SLACK
  lower = jnp.sqrt(w_a[..., 0] * w_b[..., 0])
  zero = upper <= 0  # Σ_a = 0 or Σ_b = 0: M = 0, and so is its nuclear norm.
  return jnp.where(zero, 1.0, upper), jnp.where(zero, 0.0, lower)


def newton_schulz_iterations(covs_a: Array, covs_b: Array) -> Array:
  """How many scaled Newton–Schulz iterations each cross term of ``pairwise_wasserstein2`` needs
  (``sqrt_method="newton_schulz"``, full covariances): the data-dependent part of its cost, which
  static FLOP counts (XLA's cost analysis, ``tools/roofline.py``) cannot see inside the loops.

  Pair (i, j) needs k iterations, the least with ℓ_k ≥ 1 − 1e-6 under the bound's recurrence
  from ℓ_0 = (λ_min,a λ_min,b)^{1/2} / (1.01 (λ_max,a λ_max,b)^{1/2}) (module docstring), at most
  40; each iteration is two [D, D] matmuls, 4 D³ FLOPs. ``pairwise_wasserstein2`` runs every pair
  at least this many (its stages iterate some pairs past their count; a pair is a fixed point
  there).

  Args:
    covs_a: float [..., R, D, D]; covs_b: float [..., S, D, D]; symmetric positive semi-definite,
      leading axes broadcasting (as ``pairwise_wasserstein2``).

  Returns:
    int32 [..., R, S], in 0..40. A pair with Σ_a = 0 or Σ_b = 0 (M = 0) counts 40: it is iterated
    as one with ℓ_0 = 0.

  Raises:
    ValueError: if the covariances are not [..., R, D, D] and [..., S, D, D] of one float D.
  """
  covs_a, covs_b = jnp.asarray(covs_a), jnp.asarray(covs_b)
  if (
      covs_a.ndim < 3
      or covs_b.ndim < 3
      or covs_a.shape[-1] != covs_a.shape[-2]
      or covs_b.shape[-2:] != covs_a.shape[-2:]
      or not jnp.issubdtype(covs_a.dtype, jnp.floating)
      or not jnp.issubdtype(covs_b.dtype, jnp.floating)
  ):
    raise ValueError(
        "newton_schulz_iterations: expected float covariances [..., R, D, D] and [..., S, D, D]; "
        f"got {covs_a.dtype}{list(covs_a.shape)} and {covs_b.dtype}{list(covs_b.shape)}"
    )
  r = covs_a.shape[-3]
  w = jnp.linalg.eigvalsh(_stack_sets(covs_a, covs_b, 2))  # One LAPACK call (module docstring).
  upper, lower = _ns_bounds(w[..., :r, None, :], w[..., None, r:, :])
  ell = jnp.clip(lower / upper, 0.0, 1.0)
  return _ns_iterations(ell.reshape(-1)).reshape(ell.shape)


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------


def _kind(mean: Array, cov: Array, which: str) -> str:
  if mean.ndim >= 1 and cov.ndim == mean.ndim + 1 and cov.shape[-2:] == (mean.shape[-1],) * 2:
    return "full"
  if mean.ndim >= 1 and cov.ndim == mean.ndim and cov.shape[-1] == mean.shape[-1]:
    return "diag"
  raise ValueError(
      f"{which}: a mean [..., D] needs a covariance [..., D, D] (full) or [..., D] (diagonal); "
      f"got mean {mean.shape} and covariance {cov.shape}"
  )


def _check_pair(mean_a, cov_a, mean_b, cov_b) -> tuple[str, tuple[Array, ...]]:
  arrays = tuple(jnp.asarray(x) for x in (mean_a, cov_a, mean_b, cov_b))
  for name, x in zip(("mean_a", "cov_a", "mean_b", "cov_b"), arrays):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(f"{name} must be floating point, got {x.dtype}")
  kind_a, kind_b = _kind(*arrays[:2], "a"), _kind(*arrays[2:], "b")
  if kind_a != kind_b:
    raise ValueError(f"covariances must both be full or both diagonal; got a {kind_a}, b {kind_b}")
  if arrays[0].shape[-1] != arrays[2].shape[-1]:
    raise ValueError(f"dimensions differ: a has D={arrays[0].shape[-1]}, b D={arrays[2].shape[-1]}")
  return kind_a, arrays


def wasserstein2(
    mean_a: Array, cov_a: Array, mean_b: Array, cov_b: Array, *, sqrt_method: str = "auto"
) -> Array:
  """Squared 2-Wasserstein distance between Gaussians (Li et al., ECCV 2024, Eq. 5).

  Full: ‖μ_a − μ_b‖² + Tr Σ_a + Tr Σ_b − 2 Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}); diagonal (Σ =
  diag(σ²)): ‖μ_a − μ_b‖² + ‖σ_a − σ_b‖². Clamped at 0 (rounding can take an exact 0 below it).

  Args:
    mean_a, mean_b: float [..., D].
    cov_a, cov_b: float [..., D, D] symmetric PSD (both full), or [..., D] variances ≥ 0 (both
      diagonal). Leading axes broadcast against each other.
    sqrt_method: how the full cross term is computed: ``"auto"`` | ``"newton_schulz"`` |
      ``"eigh"`` (module docstring). Ignored for diagonal covariances.

  Returns:
    float [...]: the broadcast leading shape, in squared feature units.

  Raises:
    ValueError: on mismatched or non-float shapes, mixed full/diagonal covariances, or an unknown
      ``sqrt_method``.
  """
  method = _resolve_sqrt_method(sqrt_method)
  kind, (mean_a, cov_a, mean_b, cov_b) = _check_pair(mean_a, cov_a, mean_b, cov_b)
  mean_term = jnp.sum((mean_a - mean_b) ** 2, axis=-1)
  if kind == "diag":
    return mean_term + jnp.sum((jnp.sqrt(cov_a) - jnp.sqrt(cov_b)) ** 2, axis=-1)
  s_a, w_a, s_b, w_b = _sqrtm_sets(cov_a[..., None, :, :], cov_b[..., None, :, :])
  cross = _cross_term(_matmul(s_b, s_a), w_a, w_b, method)[..., 0]
  traces = jnp.trace(cov_a, axis1=-2, axis2=-1) + jnp.trace(cov_b, axis1=-2, axis2=-1)
  return jnp.maximum(mean_term + traces - 2.0 * cross, 0.0)


def pairwise_wasserstein2(
    means_a: Array, covs_a: Array, means_b: Array, covs_b: Array, *, sqrt_method: str = "auto"
) -> Array:
  """Squared W2 between every Gaussian of one set and every Gaussian of another (Eq. 5).

  out[..., i, j] = wasserstein2(a_i, b_j). Each covariance's square root is computed once (R + S
  eigendecompositions); the R·S cross terms are nuclear norms of S_b,j S_a,i (module docstring).

  Args:
    means_a: float [..., R, D]; covs_a [..., R, D, D] (full) or [..., R, D] (diagonal).
    means_b: float [..., S, D]; covs_b likewise, the same kind as covs_a. The leading axes ``...``
      broadcast (e.g. images of a batch, task pairs).
    sqrt_method: ``"auto"`` | ``"newton_schulz"`` | ``"eigh"``, as ``wasserstein2``.

  Returns:
    float [..., R, S], clamped at 0.

  Raises:
    ValueError: as ``wasserstein2``, and if the means are not at least [R, D].
  """
  method = _resolve_sqrt_method(sqrt_method)
  kind, (means_a, covs_a, means_b, covs_b) = _check_pair(means_a, covs_a, means_b, covs_b)
  if means_a.ndim < 2 or means_b.ndim < 2:
    raise ValueError(
        f"means must be [..., R, D] and [..., S, D]; got {means_a.shape}, {means_b.shape}"
    )
  diff = means_a[..., :, None, :] - means_b[..., None, :, :]
  mean_term = jnp.sum(diff * diff, axis=-1)
  if kind == "diag":
    std_a, std_b = jnp.sqrt(covs_a), jnp.sqrt(covs_b)
    d_std = std_a[..., :, None, :] - std_b[..., None, :, :]
    return mean_term + jnp.sum(d_std * d_std, axis=-1)
  with jax.named_scope("square_roots"):  # Profiles name the stages (tools/profile_train_step.py).
    s_a, w_a, s_b, w_b = _sqrtm_sets(covs_a, covs_b)
  with jax.named_scope("cross_terms"):
    # M_ij = S_b,j S_a,i for every pair as ONE matmul without batch axes (and so its gradient):
    # XLA's CPU batched matmul over [..., R, S] pair axes is several times slower.
    m = jnp.einsum("...jac,...icb->...ijab", s_b, s_a, precision=_HIGHEST)
    cross = _cross_term(m, w_a[..., :, None, :], w_b[..., None, :, :], method)
  tr_a = jnp.trace(covs_a, axis1=-2, axis2=-1)
  tr_b = jnp.trace(covs_b, axis1=-2, axis2=-1)
  return jnp.maximum(mean_term + tr_a[..., :, None] + tr_b[..., None, :] - 2.0 * cross, 0.0)


def kl_divergence(mean_a: Array, cov_a: Array, mean_b: Array, cov_b: Array) -> Array:
  """KL(a ‖ b) between Gaussians (the paper's distance ablation, docs/methods.md step 3).

  ½ [Tr(Σ_b⁻¹ Σ_a) + (μ_b − μ_a)ᵀ Σ_b⁻¹ (μ_b − μ_a) − D + ln det Σ_b − ln det Σ_a], via Cholesky
  factors (full) or elementwise (diagonal). Not symmetric.

  Args:
    mean_a, mean_b: float [..., D].
    cov_a, cov_b: float [..., D, D] symmetric positive definite (both full), or [..., D] variances
      > 0 (both diagonal). Leading axes broadcast. A singular covariance gives inf or NaN: keep
      ``region_gaussians``' shrinkage ε > 0.

  Returns:
    float [...], in nats.

  Raises:
    ValueError: as ``wasserstein2``.
  """
  kind, (mean_a, cov_a, mean_b, cov_b) = _check_pair(mean_a, cov_a, mean_b, cov_b)
  diff = mean_b - mean_a
  dim = mean_a.shape[-1]
  if kind == "diag":
    terms = cov_a / cov_b + diff * diff / cov_b - 1.0 + jnp.log(cov_b) - jnp.log(cov_a)
    return 0.5 * jnp.sum(terms, axis=-1)
  batch = jnp.broadcast_shapes(
      mean_a.shape[:-1], cov_a.shape[:-2], mean_b.shape[:-1], cov_b.shape[:-2]
  )
  both = _stack_sets(
      jnp.broadcast_to(cov_a, batch + (dim, dim))[..., None, :, :],
      jnp.broadcast_to(cov_b, batch + (dim, dim))[..., None, :, :],
      2,
  )
  factors = jnp.linalg.cholesky(both)  # One LAPACK call (``_stack_sets``).
  l_a, l_b = factors[..., 0, :, :], factors[..., 1, :, :]
  solve = functools.partial(jax.scipy.linalg.solve_triangular, lower=True)
  trace_term = jnp.sum(solve(l_b, l_a) ** 2, axis=(-2, -1))  # ‖L_b⁻¹ L_a‖_F² = Tr(Σ_b⁻¹ Σ_a).
  y = solve(l_b, jnp.broadcast_to(diff, batch + (dim,))[..., None])[..., 0]
  logdet = lambda l: 2.0 * jnp.sum(jnp.log(jnp.diagonal(l, axis1=-2, axis2=-1)), axis=-1)
  return 0.5 * (trace_term + jnp.sum(y * y, axis=-1) - dim + logdet(l_b) - logdet(l_a))


def pairwise_kl_divergence(means_a: Array, covs_a: Array, means_b: Array, covs_b: Array) -> Array:
  """KL(a_i ‖ b_j) between every Gaussian of one set and every Gaussian of another.

  out[..., i, j] = kl_divergence(a_i, b_j), computed with one Cholesky factorization per Gaussian
  (R + S, in one LAPACK call) instead of one per pair: with P_j = Σ_b,j⁻¹ (from its factor),
  Tr(P_j Σ_a,i) and the Mahalanobis term (μ_b,j − μ_a,i)ᵀ P_j (μ_b,j − μ_a,i) are O(D²) contractions
  per pair.

  Args:
    means_a: float [..., R, D]; covs_a [..., R, D, D] (full, symmetric positive definite) or
      [..., R, D] (variances > 0).
    means_b: float [..., S, D]; covs_b likewise, the same kind as covs_a. Leading axes broadcast.

  Returns:
    float [..., R, S], in nats.

  Raises:
    ValueError: as ``wasserstein2``, and if the means are not at least [R, D].
  """
  kind, (means_a, covs_a, means_b, covs_b) = _check_pair(means_a, covs_a, means_b, covs_b)
  if means_a.ndim < 2 or means_b.ndim < 2:
    raise ValueError(
        f"means must be [..., R, D] and [..., S, D]; got {means_a.shape}, {means_b.shape}"
    )
  dim = means_a.shape[-1]
  diff = means_b[..., None, :, :] - means_a[..., :, None, :]  # [..., R, S, D]
  if kind == "diag":
    inv_b = 1.0 / covs_b
    trace_term = jnp.einsum("...id,...jd->...ij", covs_a, inv_b, precision=_HIGHEST)
    mahalanobis = jnp.sum(diff * diff * inv_b[..., None, :, :], axis=-1)
    logdet_a, logdet_b = jnp.sum(jnp.log(covs_a), -1), jnp.sum(jnp.log(covs_b), -1)
  else:
    r = covs_a.shape[-3]
    factors = jnp.linalg.cholesky(_stack_sets(covs_a, covs_b, 2))  # One LAPACK call.
    l_a, l_b = factors[..., :r, :, :], factors[..., r:, :, :]
    eye = jnp.broadcast_to(jnp.eye(dim, dtype=l_b.dtype), l_b.shape)
    inv_l_b = jax.scipy.linalg.solve_triangular(l_b, eye, lower=True)
    inv_b = _matmul(_mT(inv_l_b), inv_l_b)  # Σ_b⁻¹ = L⁻ᵀ L⁻¹, symmetric.
    trace_term = jnp.einsum("...iab,...jab->...ij", covs_a, inv_b, precision=_HIGHEST)
    mahalanobis = jnp.einsum("...ija,...jab,...ijb->...ij", diff, inv_b, diff, precision=_HIGHEST)
    logdet = lambda l: 2.0 * jnp.sum(jnp.log(jnp.diagonal(l, axis1=-2, axis2=-1)), axis=-1)
    logdet_a, logdet_b = logdet(l_a), logdet(l_b)
  return 0.5 * (trace_term + mahalanobis - dim + logdet_b[..., None, :] - logdet_a[..., :, None])
