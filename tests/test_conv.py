"""Tests for layers.conv2d / layers.Conv: every implementation against NumPy float64 (value and
both gradients) for K x K kernels with stride and padding; layers.Conv against flax's nn.Conv; and
the compiled loop body ("Convolutions inside loops" in layers.py): mmgrad's gradients stay in the
forward's NHWC / HWIO form inside a lax.scan.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.models import layers


def np_conv(x, k, stride, pad):
  """NumPy float64 reference: y [B, Ho, Wo, Cout] of x [B, H, W, Cin], k [K, K, Cin, Cout]."""
  size = k.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (x.shape[1] + 2 * pad - size) // stride + 1
  wo = (x.shape[2] + 2 * pad - size) // stride + 1
  y = np.zeros((x.shape[0], ho, wo, k.shape[3]))
  for i in range(size):
    for j in range(size):
      view = xp[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride]
      y += view @ k[i, j]
  return y


def np_conv_grads(x, k, r, stride, pad):
  """(dL/dx, dL/dk) of L = sum(r * conv(x, k)) by the chain rule written out, in float64."""
  size = k.shape[0]
  ho, wo = r.shape[1], r.shape[2]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dxp = np.zeros_like(xp)
  dk = np.zeros_like(k)
  for i in range(size):
    for j in range(size):
      rows = slice(i, i + (ho - 1) * stride + 1, stride)
      cols = slice(j, j + (wo - 1) * stride + 1, stride)
      dk[i, j] = np.einsum("bhwc,bhwo->co", xp[:, rows, cols], r)
      dxp[:, rows, cols] += r @ k[i, j].T
  dx = dxp[:, pad : pad + x.shape[1], pad : pad + x.shape[2]]
  return dx, dk


# (B, H, W, Cin, Cout, K, stride, padding): odd sizes whose last window does not reach the edge,
# even kernels (a patch embedding: K = stride, padding 0), 1x1 and 3x3 with stride 2.
CASES = [
    (2, 7, 6, 3, 4, 3, 2, 1),
    (2, 8, 8, 4, 4, 3, 2, 1),
    (2, 5, 4, 3, 6, 1, 1, 0),
    (1, 5, 7, 3, 2, 1, 2, 0),
    (2, 9, 8, 2, 3, 5, 2, 2),
    (2, 9, 11, 3, 3, 5, 1, 2),
    (2, 8, 12, 3, 5, 4, 4, 0),
    (2, 6, 10, 5, 7, 3, 1, 1),
    (2, 6, 10, 5, 5, 3, 1, 1),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["xla", "mmgrad"])
def test_conv2d_value_and_gradients_match_numpy(impl, case):
  bs, h, w, cin, cout, size, stride, pad = case
  rng = np.random.default_rng(0)
  x = rng.normal(size=(bs, h, w, cin)).astype(np.float32)
  k = rng.normal(size=(size, size, cin, cout)).astype(np.float32)
  b = rng.normal(size=(cout,)).astype(np.float32)
  want_y = np_conv(x.astype(np.float64), k.astype(np.float64), stride, pad) + b
  y = layers.conv2d(
      jnp.asarray(x), jnp.asarray(k), jnp.asarray(b), stride=stride, padding=pad, impl=impl
  )
  assert y.shape == want_y.shape and y.dtype == jnp.float32
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-4)

  r = rng.normal(size=want_y.shape)
  loss = lambda x, k: jnp.sum(layers.conv2d(x, k, stride=stride, padding=pad, impl=impl) * r)
  dx, dk = jax.grad(loss, argnums=(0, 1))(x, k)
  want_dx, want_dk = np_conv_grads(x.astype(np.float64), k.astype(np.float64), r, stride, pad)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(dk, want_dk, rtol=1e-5, atol=1e-4 * np.abs(want_dk).max())


def test_kernel_gradient_runs_image_by_image_from_the_batch_size_in_bytes():
  """The batch's larger operand decides (4 MiB): many small maps go image by image, a small batch
  and a single image do not."""
  by_image = lambda x, g: layers._kernel_grad_by_image(jnp.zeros(x), jnp.zeros(g))
  assert by_image((40, 36, 48, 32), (40, 36, 48, 32))  # 8.8 MB, 0.2 MB an image.
  assert by_image((8, 96, 128, 8), (8, 96, 128, 16))  # The output gradient's 6.3 MB decide.
  assert not by_image((8, 96, 128, 8), (8, 96, 128, 8))  # 3.1 MB.
  assert not by_image((10, 36, 48, 36), (10, 36, 48, 36))  # 2.5 MB.
  assert not by_image((1, 288, 384, 64), (1, 288, 384, 64))  # One image: nothing to split.


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[6]])
def test_mmgrad_strided_kernel_gradient_image_by_image(monkeypatch, case):
  # Every map takes the image-by-image kernel gradient (a scan over the batch) here.
  monkeypatch.setattr(layers, "_KGRAD_BATCH_BYTES", 0)
  bs, h, w, cin, cout, size, stride, pad = case
  rng = np.random.default_rng(2)
  x = rng.normal(size=(bs, h, w, cin)).astype(np.float32)
  k = rng.normal(size=(size, size, cin, cout)).astype(np.float32)
  ho, wo = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
  r = rng.normal(size=(bs, ho, wo, cout))
  loss = lambda k: jnp.sum(layers.conv2d(x, k, stride=stride, padding=pad, impl="mmgrad") * r)
  _, want_dk = np_conv_grads(x.astype(np.float64), k.astype(np.float64), r, stride, pad)
  np.testing.assert_allclose(
      jax.grad(loss)(k), want_dk, rtol=1e-5, atol=1e-4 * np.abs(want_dk).max()
  )
  assert "scan" in str(jax.make_jaxpr(jax.grad(loss))(k))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel=(4, 4, 3, 2)), "explicit padding"),
        (dict(kernel=(3, 3, 3, 2), padding=3), "padding < 3"),
        (dict(kernel=(3, 3, 3, 2), stride=0), "stride >= 1"),
        (dict(kernel=(3, 2, 3, 2)), r"\[K, K, Cin, Cout\]"),
        (dict(kernel=(3, 3, 4, 2)), r"\[K, K, Cin, Cout\]"),
        (dict(kernel=(9, 9, 3, 2), padding=0), "smaller than 9x9"),
        (dict(kernel=(3, 3, 3, 2), stride=2, impl="im2col"), "im2col"),
        (dict(kernel=(3, 3, 3, 2), impl="fft"), "conv_impl must be one of"),
    ],
)
def test_conv2d_rejects_bad_arguments(kwargs, match):
  kernel = jnp.zeros(kwargs.pop("kernel"))
  with pytest.raises(ValueError, match=match):
    layers.conv2d(jnp.zeros((1, 6, 6, 3)), kernel, **kwargs)


@pytest.mark.parametrize(
    "size, stride, padding", [(3, 1, None), (1, 2, None), (4, 4, 0), (7, 1, 3)]
)
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_module_is_flax_conv(size, stride, padding, use_bias):
  x = jax.random.normal(jax.random.key(1), (2, 12, 16, 3))
  ours = layers.Conv(5, size, stride=stride, padding=padding, use_bias=use_bias)
  p = size // 2 if padding is None else padding
  flax_conv = nn.Conv(5, (size, size), strides=stride, padding=p, use_bias=use_bias)
  v_ours, v_flax = ours.init(jax.random.key(0), x), flax_conv.init(jax.random.key(0), x)
  # Same parameter tree and initial values under the same key (checkpoints and seeds carry over).
  assert jax.tree.structure(v_ours) == jax.tree.structure(v_flax)
  jax.tree.map(np.testing.assert_array_equal, v_ours, v_flax)
  np.testing.assert_allclose(
      ours.apply(v_ours, x), flax_conv.apply(v_flax, x), rtol=1e-5, atol=1e-5
  )
  in_bf16 = layers.Conv(
      5, size, stride=stride, padding=padding, use_bias=use_bias, dtype=jnp.bfloat16
  )
  assert in_bf16.apply(v_ours, x).dtype == jnp.bfloat16


def _scanned_grad_dim_labels(impl):
  """The dim_labels of every convolution XLA compiles for 3 gradient steps in one lax.scan of a
  stride-1 and a stride-2 conv (the HRNet pattern)."""
  k1 = jax.random.normal(jax.random.key(0), (3, 3, 4, 8))
  k2 = jax.random.normal(jax.random.key(1), (3, 3, 8, 8))
  xs = jax.random.normal(jax.random.key(2), (3, 2, 16, 16, 4))

  def loss(params, x):
    h = jnp.tanh(layers.conv2d(x, params[0], impl=impl))
    return jnp.sum(layers.conv2d(h, params[1], stride=2, impl=impl) ** 2)

  def steps(params, xs):
    def step(params, x):
      g = jax.grad(loss)(params, x)
      return jax.tree.map(lambda p, d: p - 1e-3 * d, params, g), None

    return jax.lax.scan(step, params, xs)[0]

  hlo = jax.jit(steps).lower((k1, k2), xs).compile().as_text()
  return re.findall(r"convolution\(.*?dim_labels=([\w>-]+)", hlo)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's layout assignment")
def test_mmgrad_gradients_in_a_loop_compile_to_the_forward_layout():
  labels = _scanned_grad_dim_labels("mmgrad")
  # The two forward convs and the strided one's input gradient (lhs dilation; the first conv's
  # input is not differentiated); the kernel gradients are matmuls.
  assert len(labels) == 3 and set(labels) == {"b01f_01io->b01f"}, labels
  # What it fixes (jax-ml/jax#12868): autodiff's gradients of the same convolutions keep other
  # layouts in the loop. Should XLA:CPU canonicalise them one day, this fails and "auto" can
  # return to "xla" on the CPU (resolve_conv_impl).
  assert set(_scanned_grad_dim_labels("xla")) != {"b01f_01io->b01f"}


def test_fusion_boundary_is_the_identity_and_stops_xla_recomputing_a_residual_chain():
  """``layers.fusion_boundary``: bit for bit ``x`` (NaN and inf included), gradient 1; a residual
  ReLU chain of 8 blocks compiles to about one ``maximum`` per block with it, and XLA:CPU's
  duplication of the chain into every consumer without it (so the check can fail)."""
  import re

  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 5)), jnp.float32)
  x = x.at[0, 0, 0, 0].set(jnp.nan).at[1, 2, 3, 4].set(jnp.inf)
  out = layers.fusion_boundary(x)
  assert out.dtype == x.dtype and out.shape == x.shape
  np.testing.assert_array_equal(np.asarray(out).view(np.int32), np.asarray(x).view(np.int32))
  g = jax.grad(lambda v: (layers.fusion_boundary(v) * 3.0).sum())(jnp.ones((4, 4)))
  np.testing.assert_array_equal(g, np.full((4, 4), 3.0, np.float32))

  def chain(v, ws, boundary):
    for w in ws:
      v = jax.nn.relu((v @ w) * 0.5 + 0.1 + v)
      v = layers.fusion_boundary(v) if boundary else v
    return v.sum()

  v, ws = jnp.ones((2, 8, 8, 16)), [jnp.eye(16) * 0.1] * 8

  def maxima(boundary):
    step = jax.jit(jax.value_and_grad(lambda v, ws: chain(v, ws, boundary)))
    return len(re.findall(r" maximum\(", step.lower(v, ws).compile().as_text()))

  assert maxima(True) <= 2 * len(ws) < 3 * len(ws) < maxima(False)
