"""MT-CP's blocks (CBAM, Coherence Fusion, Trace-Back, pyramid fusion) against float64 NumPy
transcriptions of the released forward passes (Klodivio355/MT-CP models/cbam.py, models/utils.py
GAAF_module2 / SPF / TraceBack, models/models_nyud_CL.py DynamicFPNFusionModule), eval mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.models import cbam, coherence_fusion, fpn_fusion, trace_back


def _randomized(variables, seed):
  """Every parameter and BatchNorm statistic random (variances positive)."""
  rng = np.random.default_rng(seed)
  leaves, tree = jax.tree_util.tree_flatten_with_path(variables)
  out = []
  for path, leaf in leaves:
    name = str(path[-1])
    value = rng.normal(size=leaf.shape) * 0.3
    if "var" in name:
      value = rng.uniform(0.5, 2.0, size=leaf.shape)
    out.append(np.asarray(value, np.float32))
  return jax.tree_util.tree_unflatten(tree, out)


def _dense(x, p):
  return x @ np.float64(p["kernel"]) + (np.float64(p["bias"]) if "bias" in p else 0.0)


def _conv(x, p, k):
  """'same' conv of [B, H, W, C] with a [k, k, C, O] kernel (+ bias)."""
  kernel = np.float64(p["kernel"])
  pad = k // 2
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = x.shape[1:3]
  out = sum(padded[:, i : i + h, j : j + w] @ kernel[i, j] for i in range(k) for j in range(k))
  return out + (np.float64(p["bias"]) if "bias" in p else 0.0)


def _bn(x, p, stats):
  return (x - stats["mean"]) / np.sqrt(np.float64(stats["var"]) + 1e-5) * p["scale"] + p["bias"]


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _cbam(x, p, s):
  mlp = lambda v: _dense(np.maximum(_dense(v, p["mlp_0"]), 0), p["mlp_1"])
  x = x * _sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))[:, None, None]
  pooled = np.stack([x.max(-1), x.mean(-1)], -1)
  gate = _bn(_conv(pooled, p["spatial_conv"], 7), p["spatial_bn"], s["spatial_bn"])
  return x * _sigmoid(gate)


def _resize_bilinear(x, h, w):
  """PyTorch bilinear, align_corners=False, separable."""

  def axis(n_in, n_out):
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0

  r0, r1, rl = axis(x.shape[1], h)
  c0, c1, cl = axis(x.shape[2], w)
  x = x[:, r0] * (1 - rl)[None, :, None, None] + x[:, r1] * rl[None, :, None, None]
  return x[:, :, c0] * (1 - cl)[None, None, :, None] + x[:, :, c1] * cl[None, None, :, None]


def _init(module, *args):
  variables = module.init(jax.random.key(0), *args)
  return _randomized(variables, 1)


def test_cbam():
  x = np.random.default_rng(0).normal(size=(2, 5, 6, 32)).astype(np.float32)
  variables = _init(cbam.CBAM(), x)
  got = cbam.CBAM().apply(variables, x)
  expected = _cbam(np.float64(x), variables["params"], variables["batch_stats"])
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("affinity", ["dot", "cosine"])
def test_coherence_fusion(affinity):
  rng = np.random.default_rng(0)
  task, a, b = (rng.normal(size=(2, 4, 5, 32)).astype(np.float32) for _ in range(3))
  module = coherence_fusion.CoherenceFusion(affinity)
  variables = _init(module, task, [a, b])
  got = module.apply(variables, task, [a, b])
  p, s = variables["params"], variables["batch_stats"]
  x = lambda v: np.float64(v)
  sem = _bn(_cbam(x(task), p["cbam_sem"], s["cbam_sem"]), p["cbam_sem_norm"], s["cbam_sem_norm"])
  gated = [v * _sigmoid(_conv(v, p[f"gate{k + 1}"], 1)) for k, v in enumerate((x(a), x(b)))]
  fused = np.maximum(_conv(np.concatenate(gated, -1), p["conv1"], 1), 0)
  d1 = np.maximum(
      _bn(_cbam(fused, p["cbam_dep"], s["cbam_dep"]), p["cbam_dep_norm"], s["cbam_dep_norm"]), 0
  )
  d2 = np.maximum(
      _bn(_cbam(fused, p["cbam_dep2"], s["cbam_dep2"]), p["cbam_dep2_norm"], s["cbam_dep2_norm"]), 0
  )
  theta, phi = d1.reshape(2, 20, -1), d2.reshape(2, 20, -1)
  if affinity == "cosine":
    theta = theta / np.linalg.norm(theta, axis=-1, keepdims=True)
    phi = phi / np.linalg.norm(phi, axis=-1, keepdims=True)
  logits = theta @ phi.transpose(0, 2, 1)
  mix = np.exp(logits - logits.max(-1, keepdims=True))
  mix /= mix.sum(-1, keepdims=True)
  out = (mix @ sem.reshape(2, 20, 32)).reshape(2, 4, 5, 32)
  expected = _bn(
      _cbam(out, p["shared_dep2"], s["shared_dep2"]), p["shared_dep2_norm"], s["shared_dep2_norm"]
  )
  np.testing.assert_allclose(
      np.asarray(got), expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max()
  )


def test_coherence_fusion_names_an_unknown_affinity():
  x = np.zeros((1, 2, 2, 32), np.float32)
  with pytest.raises(ValueError, match="affinity 'cos': expected one of"):
    _init(coherence_fusion.CoherenceFusion("cos"), x, [x, x])


def test_trace_back_runs_its_refinements_coarsest_first_with_bilinear_resizes():
  rng = np.random.default_rng(0)
  fused = rng.normal(size=(2, 12, 16, 32)).astype(np.float32)  # Stride 4.
  stages = [
      rng.normal(size=(2, *hw, c)).astype(np.float32)
      for hw, c in (((3, 4), 128), ((6, 8), 64), ((12, 16), 32))
  ]
  module = trace_back.TraceBack(width=32)
  variables = _init(module, fused, stages)
  got = module.apply(variables, fused, stages)
  p, s = variables["params"], variables["batch_stats"]
  carried, expected = np.float64(fused), []
  for i, stage in enumerate(stages):
    q, t = p[f"spf_modules_{i}"], s[f"spf_modules_{i}"]
    pred = _cbam(carried, q["sem_cbam"], t["sem_cbam"])
    back = _cbam(np.float64(stage), q["dep_cbam"], t["dep_cbam"])
    pred = _resize_bilinear(pred, *back.shape[1:3])  # Down (4x) first, then up.
    cat = np.concatenate([pred, back], -1)
    expected.append(np.maximum(_bn(_conv(cat, q["sem_conv"], 1), q["b1"], t["b1"]), 0))
    carried = np.maximum(_bn(_conv(cat, q["dep_conv"], 1), q["b2"], t["b2"]), 0)
  assert [o.shape for o in got] == [(2, 3, 4, 32), (2, 6, 8, 32), (2, 12, 16, 32)]
  for ours, theirs in zip(got, expected):
    np.testing.assert_allclose(
        np.asarray(ours), theirs, rtol=2e-4, atol=2e-4 * np.abs(theirs).max()
    )


@pytest.mark.parametrize("sizes", [((8, 10), (4, 5), (2, 3)), ((9, 11), (5, 6), (3, 3))])
def test_pyramid_fusion_with_pytorch_nearest(sizes):
  rng = np.random.default_rng(0)
  maps = [rng.normal(size=(2, *hw, c)).astype(np.float32) for hw, c in zip(sizes, (8, 16, 32))]
  module = fpn_fusion.PyramidFusion(width=8)
  variables = _init(module, maps)
  got = module.apply(variables, maps)
  p = variables["params"]
  laterals = [_conv(np.float64(m), p[f"lateral_convs_{i}"], 1) for i, m in enumerate(maps)]
  fused = laterals[-1]
  for i in (1, 0):
    h, w = laterals[i].shape[1:3]
    rows = np.floor(np.arange(h) * fused.shape[1] / h).astype(int)
    cols = np.floor(np.arange(w) * fused.shape[2] / w).astype(int)
    fused = fused[:, rows][:, :, cols] + laterals[i]
  expected = _conv(fused, p["fpn_convs_0"], 3)
  np.testing.assert_allclose(
      np.asarray(got), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
  )


@pytest.mark.parametrize("size", [(3, 5), (9, 11), (24, 7)])
def test_resizes_equal_pytorch_interpolate_up_and_down(size):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(1, 12, 16, 3)).astype(np.float32)
  t = torch.from_numpy(x.transpose(0, 3, 1, 2))
  for ours, mode in (
      (trace_back.resize_bilinear, "bilinear"),
      (fpn_fusion.resize_nearest, "nearest"),
  ):
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    expected = torch.nn.functional.interpolate(t, size=size, mode=mode, **kwargs)
    np.testing.assert_allclose(
        np.asarray(ours(x, *size)), expected.numpy().transpose(0, 2, 3, 1), atol=1e-5, err_msg=mode
    )


@pytest.mark.parametrize("chunk", [1, 7, 12])
def test_chunked_affinity_mix_equals_the_whole_matrix_with_gradients(chunk):
  rng = np.random.default_rng(5)
  theta, phi, values = (jnp.asarray(rng.normal(size=(2, 12, n)), jnp.float32) for n in (4, 4, 3))
  phi = phi[:, :10]
  values = values[:, :10]
  whole = lambda t, p, v: jnp.sum(jnp.sin(coherence_fusion.affinity_mix(t, p, v)))
  chunked = lambda t, p, v: jnp.sum(jnp.sin(coherence_fusion.affinity_mix(t, p, v, chunk)))
  np.testing.assert_allclose(
      coherence_fusion.affinity_mix(theta, phi, values, chunk),
      coherence_fusion.affinity_mix(theta, phi, values),
      rtol=1e-5,
      atol=1e-6,
  )
  for got, expected in zip(
      jax.grad(chunked, argnums=(0, 1, 2))(theta, phi, values),
      jax.grad(whole, argnums=(0, 1, 2))(theta, phi, values),
  ):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
