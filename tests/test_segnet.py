"""Tests for mtjax.models (SegNet-MTL, DATA_AND_METRICS.md "SegNet-MTL architecture").

Everything that runs uses tiny widths and 32x64 inputs; the full-width parameter counts come from
jax.eval_shape (no compute). References are independent NumPy float64 implementations.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.models import SegNetMTL, layers

TINY = (8, 8, 16, 16, 16)
SHAPE = (2, 32, 64, 3)


def _size(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def tiny():
  model = SegNetMTL(filters=TINY)
  x = jax.random.uniform(jax.random.key(1), SHAPE)
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  return model, variables, x


@pytest.fixture(scope="module")
def apply_eval(tiny):
  return jax.jit(functools.partial(tiny[0].apply, train=False))


# ---------------------------------------------------------------- NumPy references


def np_pool_argmax(x):
  """[B,H,W,C] -> (pooled, first-max flat window index in 0..3), row-major window order."""
  b, h, w, c = x.shape
  win = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4)
  idx = np.argmax(win, axis=1)  # NumPy argmax returns the first maximum
  pooled = win[np.arange(len(win)), idx].reshape(b, h // 2, w // 2, c)
  return pooled, idx.reshape(b, h // 2, w // 2, c)


def np_unpool(y, x):
  b, h, w, c = x.shape
  _, idx = np_pool_argmax(x)
  out = np.zeros((b, h // 2, w // 2, c, 4), np.float64)
  np.put_along_axis(out, idx[..., None], y[..., None].astype(np.float64), axis=-1)
  return out.reshape(b, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(b, h, w, c)


def np_conv3x3(x, k, bias):
  x, k = x.astype(np.float64), k.astype(np.float64)
  b, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((b, h, w, k.shape[-1]))
  for i in range(3):
    for j in range(3):
      out += xp[:, i : i + h, j : j + w] @ k[i, j]
  return out + bias


# ---------------------------------------------------------------- architecture


def test_param_and_batch_stats_counts_match_mtan():
  model = SegNetMTL(num_classes=13)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  assert _size(v["params"]) == 25_055_185
  assert _size(v["batch_stats"]) == 14_336
  p = v["params"]
  assert p["encoder_block_0"]["conv"]["kernel"].shape == (3, 3, 3, 64)
  assert p["decoder_block_1"]["conv"]["kernel"].shape == (3, 3, 128, 64)
  assert p["conv_block_dec_2_1"]["conv"]["kernel"].shape == (3, 3, 128, 128)
  assert p["pred_semseg_1"]["kernel"].shape == (1, 1, 64, 13)
  assert p["pred_normal_0"]["kernel"].shape == (3, 3, 64, 64)


def test_outputs_shapes_and_semantics(tiny, apply_eval):
  _, variables, x = tiny
  out = apply_eval(variables, x)
  assert set(out) == {"semseg", "depth", "normal"}
  assert out["semseg"].shape == (2, 32, 64, 13) and out["semseg"].dtype == jnp.float32
  assert out["depth"].shape == (2, 32, 64, 1) and out["depth"].dtype == jnp.float32
  assert out["normal"].shape == (2, 32, 64, 3) and out["normal"].dtype == jnp.float32
  logp = np.asarray(out["semseg"], np.float64)
  lse = np.log(np.sum(np.exp(logp), axis=-1))
  np.testing.assert_allclose(lse, 0.0, atol=1e-5)
  np.testing.assert_allclose(
      np.linalg.norm(np.asarray(out["normal"], np.float64), axis=-1), 1.0, atol=1e-5
  )
  assert np.std(np.asarray(out["depth"])) > 0


def test_task_subset_and_bf16_compute():
  model = SegNetMTL(filters=TINY, tasks=("depth", "normal"), dtype=jnp.bfloat16)
  x = jnp.ones((1, 32, 32, 3))
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  assert "pred_semseg_0" not in v["params"] and "pred_normal_1" in v["params"]
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v))
  out = jax.eval_shape(functools.partial(model.apply, train=False), v, x)
  assert set(out) == {"depth", "normal"}
  assert out["depth"].dtype == jnp.float32 and out["normal"].shape == (1, 32, 32, 3)


@pytest.mark.parametrize("shape", [(1, 32, 48, 3), (1, 40, 64, 3), (32, 64, 3)])
def test_bad_input_shape_raises(tiny, shape):
  model, variables, _ = tiny
  with pytest.raises(ValueError, match=r"divisible by 32.*" + str(shape[-3])):
    model.apply(variables, jnp.zeros(shape), train=False)


def test_bad_options_raise(tiny):
  _, variables, x = tiny
  with pytest.raises(ValueError, match="conv_impl"):
    SegNetMTL(filters=TINY, conv_impl="fft").apply(variables, x, train=False)
  with pytest.raises(ValueError, match="edges"):
    SegNetMTL(filters=TINY, tasks=("semseg", "edges")).init(jax.random.key(0), x, train=False)


def test_train_updates_batch_stats_eval_uses_running_averages(tiny, apply_eval):
  model, variables, x = tiny
  apply_train = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  _, upd = apply_train(variables, x)
  changed = jax.tree.map(
      lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], upd["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))
  # Eval: no mutation requested (flax would raise if BatchNorm tried to write), and each
  # example's output is independent of the rest of the batch (running stats, not batch stats).
  v2 = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
  x2 = jnp.concatenate([x[:1], 1.0 - x[1:]])
  a = apply_eval(v2, x)["depth"]
  b = apply_eval(v2, x2)["depth"]
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
  t = apply_train(v2, x2)[0]["depth"]
  assert not np.allclose(a[0], t[0], atol=1e-3)


def test_batchnorm_matches_pytorch_semantics():
  rng = np.random.default_rng(0)
  x = rng.normal(2.0, 3.0, (2, 4, 6, 3)).astype(np.float32)
  bn = layers.BatchNorm(use_running_average=False)
  v = bn.init(jax.random.key(0), x)
  v = {
      "params": {"scale": jnp.array([1.0, 2.0, 0.5]), "bias": jnp.array([0.0, 1.0, -1.0])},
      "batch_stats": v["batch_stats"],
  }
  y, upd = bn.apply(v, x, mutable=["batch_stats"])
  x64 = x.astype(np.float64).reshape(-1, 3)
  mean, var, uvar = x64.mean(0), x64.var(0), x64.var(0, ddof=1)
  ref = (x64 - mean) / np.sqrt(var + 1e-5) * np.array([1.0, 2.0, 0.5]) + np.array([0, 1.0, -1])
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 3), ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * uvar, rtol=1e-5)
  y_eval = layers.BatchNorm(use_running_average=True).apply(
      {"params": v["params"], "batch_stats": upd["batch_stats"]}, x
  )
  rm, rv = 0.1 * mean, 0.9 + 0.1 * uvar
  ref = (x64 - rm) / np.sqrt(rv + 1e-5) * np.array([1.0, 2.0, 0.5]) + np.array([0, 1.0, -1])
  np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 3), ref, rtol=1e-4, atol=1e-4)


def test_batchnorm_variance_exact_for_large_mean_small_spread():
  # Trained activations: a large per-channel offset, a small spread (here 80 ± 0.02). One-pass
  # E[x²] − E[x]² in float32 loses the variance to cancellation (an ulp of 6400 is 5e-4, the
  # variance 4e-4); the two-pass variance must match float64.
  rng = np.random.default_rng(1)
  x = (80.0 + 0.02 * rng.standard_normal((4, 16, 16, 2))).astype(np.float32)
  bn = layers.BatchNorm(use_running_average=False, momentum=0.0)  # running stats = batch stats
  v = bn.init(jax.random.key(0), x)
  y, upd = bn.apply(v, x, mutable=["batch_stats"])
  x64 = x.astype(np.float64).reshape(-1, 2)
  np.testing.assert_allclose(upd["batch_stats"]["var"], x64.var(0, ddof=1), rtol=1e-3)
  ref = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 2), ref, atol=2e-3)


# ---------------------------------------------------------------- pooling


def test_pool_unpool_match_numpy_with_ties():
  rng = np.random.default_rng(0)
  # Small integers: most windows contain ties, so first-max tie-breaking is exercised.
  x = rng.integers(0, 3, (2, 6, 8, 5)).astype(np.float32)
  x[0, :2, :2, 0] = 1.0  # a window that is all ties
  y = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  pooled, _ = np_pool_argmax(x)
  np.testing.assert_array_equal(layers.max_pool_2x2(jnp.asarray(x)), pooled)
  ref = np_unpool(y, x)
  out = layers.max_unpool_2x2(jnp.asarray(y), jnp.asarray(x))
  np.testing.assert_array_equal(out, ref)
  assert out[0, 0, 0, 0] == y[0, 0, 0, 0] and not np.any(out[0, :2, :2, 0].ravel()[1:])
  # The gradient w.r.t. y gathers the cotangent at the argmax positions (the adjoint).
  r = rng.normal(size=x.shape).astype(np.float32)
  g = jax.grad(lambda y: jnp.sum(layers.max_unpool_2x2(y, jnp.asarray(x)) * r))(y)
  _, idx = np_pool_argmax(x)
  rwin = r.reshape(2, 3, 2, 4, 2, 5).transpose(0, 1, 3, 5, 2, 4).reshape(2, 3, 4, 5, 4)
  np.testing.assert_allclose(g, np.take_along_axis(rwin, idx[..., None], -1)[..., 0], rtol=1e-6)
  # The pool's gradient goes to the first maximum of each window only (PyTorch), so it equals
  # the unpooled cotangent: even in the window of four ties, one entry gets it all.
  gx = jax.grad(lambda x: jnp.sum(layers.max_pool_2x2(x) * y))(jnp.asarray(x))
  np.testing.assert_array_equal(gx, ref.astype(np.float32))
  assert gx[0, 0, 0, 0] == y[0, 0, 0, 0] and not np.any(gx[0, :2, :2, 0].ravel()[1:])


def test_pool_rejects_odd_shapes():
  with pytest.raises(ValueError, match="even"):
    layers.max_pool_2x2(jnp.zeros((1, 5, 4, 2)))
  with pytest.raises(ValueError, match="expected"):
    layers.max_unpool_2x2(jnp.zeros((1, 3, 2, 2)), jnp.zeros((1, 4, 4, 2)))


# ---------------------------------------------------------------- convolution implementations


# (B, H, W, Cin, Cout): mmgrad's kernel gradient shifts x when Cout > Cin, the output gradient when
# Cin > Cout; for Cin = Cout it takes one matmul of shift buffers (per image on large maps).
@pytest.mark.parametrize(
    "shape",
    [(2, 6, 10, 5, 7), (2, 6, 10, 7, 5), (1, 10, 20, 4, 3), (2, 6, 10, 5, 5), (2, 10, 20, 4, 4)],
)
@pytest.mark.parametrize("impl", ["xla", "im2col", "mmgrad"])
def test_conv3x3_impls_match_numpy_and_xla_grads(impl, shape):
  rng = np.random.default_rng(0)
  bs, h, w, cin, cout = shape
  x = rng.normal(size=(bs, h, w, cin)).astype(np.float32)
  k = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
  b = rng.normal(size=(cout,)).astype(np.float32)
  y = layers.conv3x3(jnp.asarray(x), jnp.asarray(k), jnp.asarray(b), impl=impl)
  np.testing.assert_allclose(y, np_conv3x3(x, k, b), rtol=1e-4, atol=1e-4)
  r = rng.normal(size=(bs, h, w, cout)).astype(np.float32)

  def loss(impl):
    return lambda x, k: jnp.sum(jnp.tanh(layers.conv3x3(x, k, impl=impl)) * r)

  got = jax.grad(loss(impl), argnums=(0, 1))(x, k)
  want = jax.grad(loss("xla"), argnums=(0, 1))(x, k)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize("shape", [(3, 6, 10, 5, 7), (3, 6, 10, 7, 5), (3, 10, 20, 4, 4)])
def test_mmgrad_kernel_gradient_image_by_image(monkeypatch, shape):
  # Large maps take the kernel gradient one image at a time (a scan summing per-image dk): here
  # every map does, and the gradients must still be autodiff's of the XLA convolution.
  monkeypatch.setattr(layers, "_KGRAD_BATCH_BYTES", 0)
  rng = np.random.default_rng(1)
  bs, h, w, cin, cout = shape
  x = rng.normal(size=(bs, h, w, cin)).astype(np.float32)
  k = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
  r = rng.normal(size=(bs, h, w, cout)).astype(np.float32)
  loss = lambda impl: lambda x, k: jnp.sum(jnp.tanh(layers.conv3x3(x, k, impl=impl)) * r)
  got = jax.grad(loss("mmgrad"), argnums=(0, 1))(x, k)
  want = jax.grad(loss("xla"), argnums=(0, 1))(x, k)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(w))))
  # The scan really ran: its jaxpr holds a loop over the batch.
  jaxpr = jax.make_jaxpr(jax.grad(loss("mmgrad"), argnums=1))(x, k)
  assert "scan[" in str(jaxpr) or " scan" in str(jaxpr), jaxpr


def test_auto_impls_resolve_per_backend():
  expected = "mmgrad" if jax.default_backend() == "cpu" else "xla"
  assert layers.resolve_conv_impl("auto") == expected


def test_model_impls_share_params_and_agree(tiny):
  _, variables, x = tiny
  target = jax.random.normal(jax.random.key(3), (2, 32, 64, 1))

  def run(conv_impl):
    model = SegNetMTL(filters=TINY, conv_impl=conv_impl)
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, variables)

    def loss(params):
      # Eval mode: train-mode BatchNorm over the 1x2-pixel deepest maps amplifies float32
      # round-off far beyond the impls' differences, hiding what this test is about.
      out = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=False)
      return jnp.mean(jnp.abs(out["depth"] - target)) - jnp.mean(out["semseg"][..., 0]), out

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

  (l0, out0), g0 = run("xla")
  (l1, out1), g1 = run("mmgrad")
  np.testing.assert_allclose(l1, l0, rtol=1e-4)
  for t in out0:
    np.testing.assert_allclose(out1[t], out0[t], rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))) + 1e-7)
