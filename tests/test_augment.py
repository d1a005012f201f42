"""Augmentation math against an independent NumPy float64 reference of MTPSL's PyTorch resampling."""

import numpy as np
import pytest
import tensorflow as tf

from mtjax.data import augment

H, W = 16, 24


def _example(seed=0):
  rng = np.random.default_rng(seed)
  invalid = rng.random((H, W)) < 0.15
  normal = rng.normal(size=(H, W, 3))
  normal = np.where(
      invalid[..., None], 0.0, normal / np.linalg.norm(normal, axis=-1, keepdims=True)
  )
  return {
      "image": rng.random((H, W, 3)).astype(np.float32),
      "semseg": np.where(rng.random((H, W)) < 0.1, -1, rng.integers(0, 13, (H, W))).astype(
          np.int32
      ),
      "depth": np.where(invalid, 0.0, rng.uniform(0.5, 10, (H, W)))[..., None].astype(np.float32),
      "normal": normal.astype(np.float32),
      "name": np.array(b"frame"),
  }


def _ref_bilinear(x, out_hw):
  """F.interpolate(mode='bilinear', align_corners=True): src = dst * (in - 1) / (out - 1)."""
  x = x.astype(np.float64)
  for axis, n_out in enumerate(out_hw):
    n_in = x.shape[axis]
    src = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    x = np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac
  return x


def _ref_nearest(x, out_hw):
  """PyTorch legacy F.interpolate(mode='nearest'): src = min(floor(dst * float32(in / out)), in - 1)."""
  for axis, n_out in enumerate(out_hw):
    n_in = x.shape[axis]
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(int), n_in - 1)
    x = np.take(x, src, axis=axis)
  return x


def _numpy(example):
  return {k: np.asarray(v) for k, v in example.items()}


def _params(seed, scales):
  return [t.numpy() for t in augment.scale_crop_params(tf.constant(seed), H, W, scales)]


def test_scale_crop_params_range_and_mtpsl_sizes():
  seen = set()
  for k in range(60):
    scale, h, w, i, j = _params([k, 7], augment.DEFAULT_SCALES)
    assert (h, w) == (int(H / scale), int(W / scale))  # Python int(), as MTPSL
    assert 0 <= i <= H - h and 0 <= j <= W - w
    seen.add(float(scale))
  assert seen == set(augment.DEFAULT_SCALES)
  offsets = {tuple(_params([k, 1], (1.5,))[3:]) for k in range(80)}
  assert {i for i, _ in offsets} == set(range(H - 10 + 1))  # every i in [0, H - h] occurs (h = 10)
  with pytest.raises(ValueError, match=">= 1"):
    augment.scale_crop_params(tf.constant([0, 0]), H, W, (0.8,))


@pytest.mark.parametrize("seed", [[0, 1], [4, 2], [9, 9]])
@pytest.mark.parametrize("scales", [(1.2,), (1.5,), (1.0,)])
def test_random_scale_crop_matches_numpy_reference(seed, scales):
  example = _example()
  out = _numpy(augment.random_scale_crop(example, tf.constant(seed), scales))
  scale, h, w, i, j = _params(seed, scales)
  assert scale == scales[0]
  crop = {k: v[i : i + h, j : j + w] for k, v in example.items() if k != "name"}

  np.testing.assert_allclose(out["image"], _ref_bilinear(crop["image"], (H, W)), atol=2e-6)
  np.testing.assert_array_equal(out["semseg"], _ref_nearest(crop["semseg"], (H, W)))
  assert set(np.unique(out["semseg"])) <= set(np.unique(example["semseg"]))
  np.testing.assert_allclose(
      out["depth"], _ref_nearest(crop["depth"], (H, W)) / scales[0], rtol=1e-6
  )
  assert out["name"] == b"frame"
  for key in ("image", "semseg", "depth", "normal"):
    assert out[key].shape == example[key].shape and out[key].dtype == example[key].dtype

  valid = _ref_nearest((crop["normal"] != 0).any(-1), (H, W))
  normal = _ref_bilinear(crop["normal"], (H, W))
  norm = np.linalg.norm(normal, axis=-1, keepdims=True)
  # Same direction as the bilinear reference (compared times its norm: float32 cancellation).
  np.testing.assert_allclose(
      out["normal"] * norm, np.where(valid[..., None], normal, 0.0), atol=2e-6
  )
  np.testing.assert_allclose(np.linalg.norm(out["normal"][valid], axis=-1), 1.0, atol=1e-5)
  assert (out["normal"][~valid] == 0).all() and (~valid).any()


def test_random_flip():
  example = _example(1)
  outcomes = set()
  for k in range(16):
    out = _numpy(augment.random_flip(example, tf.constant([k, 3])))
    flipped = not np.array_equal(out["image"], example["image"])
    outcomes.add(flipped)
    if flipped:
      np.testing.assert_array_equal(out["image"], example["image"][:, ::-1])
      np.testing.assert_array_equal(out["semseg"], example["semseg"][:, ::-1])
      np.testing.assert_array_equal(out["depth"], example["depth"][:, ::-1])
      np.testing.assert_array_equal(out["normal"], example["normal"][:, ::-1] * [-1, 1, 1])
    else:
      for key in ("semseg", "depth", "normal"):
        np.testing.assert_array_equal(out[key], example[key])
    assert out["name"] == b"frame"
  assert outcomes == {True, False}


def test_augment_deterministic_and_identity():
  example = _example(2)

  def run(seed, **kw):
    return _numpy(augment.augment(example, tf.constant(seed), **kw))

  a, b = run([1, 2]), run([1, 2])
  for key in ("image", "semseg", "depth", "normal"):
    np.testing.assert_array_equal(a[key], b[key])
  assert len({run([k, 2])["image"].tobytes() for k in range(6)}) > 2
  same = run([1, 2], scales=(1.0,), flip=False)
  for key in ("image", "semseg", "depth", "normal"):
    np.testing.assert_array_equal(same[key], example[key])
  # scale 1.0 through the resize path is also the identity (align_corners bilinear, same size).
  full = _numpy(augment.random_scale_crop(example, tf.constant([0, 0]), (1.0,)))
  np.testing.assert_allclose(full["image"], example["image"], atol=1e-6)
  np.testing.assert_array_equal(full["semseg"], example["semseg"])
