"""Tests for mtjax.metrics against an independent float64 NumPy reference."""

import functools

import jax
import numpy as np
import pytest

from mtjax import metrics

C = 5


def _seg_batch(rng, shape=(2, 6, 7)):
  labels = rng.integers(-1, C, size=shape).astype(np.int32)  # -1 = ignore
  labels[labels == 3] = 2  # class 3 never in gt
  pred = rng.integers(0, C, size=shape).astype(np.int32)
  pred[pred == 3] = 0  # ... nor in prediction: must be excluded from mIoU
  labels[0, 0, 0], pred[0, 0, 0] = 4, 4  # class 4 surely present
  return pred, labels


def _depth_batch(rng, shape=(2, 6, 7, 1)):
  gt = rng.uniform(0.5, 5.0, size=shape).astype(np.float32)
  gt[rng.random(shape) < 0.3] = 0.0  # invalid
  pred = (gt * rng.uniform(0.7, 1.4, size=shape) + rng.normal(0, 0.1, size=shape)).astype(
      np.float32
  )
  gt.reshape(-1)[:3] = 1.0
  pred.reshape(-1)[:3] = [-0.5, 0.0, 1.0]  # non-positive predictions fail δ1
  return pred, gt


def _normal_batch(rng, shape=(2, 6, 7, 3)):
  gt = rng.normal(size=shape)
  gt /= np.linalg.norm(gt, axis=-1, keepdims=True)
  gt[rng.random(shape[:-1]) < 0.3] = 0.0  # invalid
  pred = gt + rng.normal(0, 0.4, size=shape)  # not unit length
  return pred.astype(np.float32), gt.astype(np.float32)


# ---- independent float64 references ----


def _ref_seg(pred, labels):
  valid = (labels >= 0) & (labels < C)
  conf, _, _ = np.histogram2d(labels[valid], pred[valid], bins=C, range=[[0, C], [0, C]])
  ious = []
  for c in range(C):
    tp = np.sum((labels == c) & (pred == c) & valid)
    union = np.sum(((labels == c) | (pred == c)) & valid)
    if union:
      ious.append(tp / union)
  return conf, {
      "miou": 100 * np.mean(ious),
      "pixel_acc": 100 * np.mean(pred[valid] == labels[valid]),
  }


def _ref_depth(pred, gt):
  # MTPSL's DepthMeter: predictions clamped to >= 1e-9 before every error.
  p, g = np.maximum(pred[gt > 0].astype(np.float64), 1e-9), gt[gt > 0].astype(np.float64)
  ratio = np.maximum(p / g, g / p)
  return {
      "abs_err": np.mean(np.abs(p - g)),
      "rel_err": np.mean(np.abs(p - g) / g),
      "rmse": np.sqrt(np.mean((p - g) ** 2)),
      "delta1": 100 * np.mean(ratio < 1.25),
  }


def _ref_angles(pred, gt):
  valid = np.any(gt != 0, axis=-1)
  p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
  p /= np.linalg.norm(p, axis=-1, keepdims=True)
  g /= np.linalg.norm(g, axis=-1, keepdims=True)
  return np.degrees(np.arccos(np.clip(np.einsum("nd,nd->n", p, g), -1, 1)))


def _ref_normals(angles):
  return {
      "mean": angles.mean(),
      "median": np.median(angles),
      "rmse": np.sqrt(np.mean(angles**2)),
      "within_11_25": 100 * np.mean(angles < 11.25),
      "within_22_5": 100 * np.mean(angles < 22.5),
      "within_30": 100 * np.mean(angles < 30),
  }


def _assert_close(got, want, atol=1e-6):
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=atol, err_msg=k)


# ---- single-batch correctness ----


def test_segmentation_matches_reference():
  pred, labels = _seg_batch(np.random.default_rng(0))
  state = metrics.segmentation_state(pred, labels, C)
  conf, want = _ref_seg(pred, labels)
  assert state["confusion"].dtype == np.int32
  np.testing.assert_array_equal(state["confusion"], conf)
  _assert_close(metrics.finalize(state), want, atol=1e-9)


def test_miou_excludes_classes_absent_from_gt_and_pred():
  labels = np.array([[0, 0, 1, -1, 1]])
  pred = np.array([[0, 1, 1, 2, -1]])  # class 2 only under an ignored pixel; classes 2..3 absent
  # (an out-of-range prediction drops its pixel rather than landing in another cell)
  got = metrics.finalize(metrics.segmentation_state(pred, labels, 4))
  assert got["miou"] == pytest.approx(100 * (1 / 2 + 1 / 2) / 2)  # not / 4
  assert got["pixel_acc"] == pytest.approx(100 * 2 / 3)


def test_depth_matches_reference():
  pred, gt = _depth_batch(np.random.default_rng(1))
  _assert_close(metrics.finalize(metrics.depth_state(pred, gt)), _ref_depth(pred, gt))


def test_depth_clamps_negative_predictions_as_mtpsl():
  # A barely trained linear head predicts negative depths: MTPSL scores them as 1e-9 m.
  gt = np.array([2.0, 3.0, 0.0, 1.0], np.float32).reshape(1, 2, 2, 1)
  pred = np.array([-1.0, 3.5, -7.0, 1.0], np.float32).reshape(1, 2, 2, 1)
  got = metrics.finalize(metrics.depth_state(pred, gt))
  np.testing.assert_allclose(got["abs_err"], (2.0 + 0.5 + 0.0) / 3, rtol=1e-6)  # not (3+0.5)/3
  np.testing.assert_allclose(got["rmse"], np.sqrt((4.0 + 0.25) / 3), rtol=1e-6)
  np.testing.assert_allclose(got["delta1"], 200 / 3, rtol=1e-6)


def test_normals_match_reference_and_median_is_exact_to_a_bin():
  pred, gt = _normal_batch(np.random.default_rng(2), shape=(3, 20, 20, 3))
  got = metrics.finalize(metrics.normals_state(pred, gt))
  want = _ref_normals(_ref_angles(pred, gt))
  assert abs(got.pop("median") - want.pop("median")) <= 0.01 + 1e-4
  _assert_close(got, want)


def test_median_even_count_across_empty_bins():
  # Two angles, 10° and 50°: exact median 30°, far from either bin.
  gt = np.array([[[1.0, 0, 0], [1.0, 0, 0], [0, 0, 0]]], np.float32)
  pred = np.array(
      [[[np.cos(np.radians(a)), np.sin(np.radians(a)), 0] for a in (10, 50, 0)]], np.float32
  )
  got = metrics.finalize(metrics.normals_state(pred, gt))
  assert got["median"] == pytest.approx(30.0, abs=0.01)
  assert got["mean"] == pytest.approx(30.0, abs=1e-4)


@pytest.mark.parametrize("num_bins", [180, 7])
def test_median_within_one_bin_width_for_any_bin_count(num_bins):
  pred, gt = _normal_batch(np.random.default_rng(3), shape=(1, 15, 15, 3))
  got = metrics.finalize(metrics.normals_state(pred, gt, num_bins=num_bins))
  assert abs(got["median"] - np.median(_ref_angles(pred, gt))) <= 180 / num_bins
  assert metrics.normals_state(pred, gt, num_bins=num_bins)["histogram"].shape == (num_bins,)


# ---- additivity: split-level sums, never a mean of batch means ----


def _merged(state_fn, batches):
  return functools.reduce(metrics.merge, [state_fn(*b) for b in batches])


def test_merge_over_batches_equals_whole_split():
  rng = np.random.default_rng(4)
  # Unequal batch sizes and valid counts, so a mean of batch means would differ.
  seg = [_seg_batch(rng, (n, 5, 4)) for n in (1, 3, 2)]
  depth = [_depth_batch(rng, (n, 5, 4, 1)) for n in (1, 3, 2)]
  depth[0][1][...] = 0.0
  depth[0][1][0, 0, 0, 0] = 1.0  # a batch with a single valid pixel, large error
  depth[0][0][0, 0, 0, 0] = 4.0
  normal = [_normal_batch(rng, (n, 5, 4, 3)) for n in (1, 3, 2)]
  cat = lambda bs: [np.concatenate(x) for x in zip(*bs)]

  seg_state = _merged(lambda p, l: metrics.segmentation_state(p, l, C), seg)
  np.testing.assert_array_equal(
      seg_state["confusion"], metrics.segmentation_state(*cat(seg), C)["confusion"]
  )
  _assert_close(metrics.finalize(seg_state), _ref_seg(*cat(seg))[1], atol=1e-9)

  depth_got = metrics.finalize(_merged(metrics.depth_state, depth))
  depth_want = _ref_depth(*cat(depth))
  _assert_close(depth_got, depth_want)
  mean_of_means = np.mean([_ref_depth(*b)["abs_err"] for b in depth])
  assert abs(mean_of_means - depth_want["abs_err"]) > 0.1  # the test can tell the two apart

  normal_got = metrics.finalize(_merged(metrics.normals_state, normal))
  normal_want = _ref_normals(_ref_angles(*cat(normal)))
  assert abs(normal_got.pop("median") - normal_want.pop("median")) <= 0.01 + 1e-4
  _assert_close(normal_got, normal_want)


def test_merge_numpy_float64_accumulator_and_nested_dicts():
  pred, gt = _depth_batch(np.random.default_rng(5))
  dev = jax.device_get({"depth": metrics.depth_state(pred, gt)})
  host = jax.tree.map(lambda x: np.zeros(np.shape(x), np.float64), dev)
  acc = metrics.merge(metrics.merge(host, dev), dev)
  assert acc["depth"]["abs_sum"].dtype == np.float64
  np.testing.assert_allclose(acc["depth"]["abs_sum"], 2 * dev["depth"]["abs_sum"], rtol=1e-6)
  assert metrics.finalize_all(acc)["depth"] == pytest.approx(metrics.finalize(dev["depth"]))


# ---- absent tasks ----


def test_no_valid_pixel_finalizes_to_empty_dict():
  z = np.zeros((1, 3, 4), np.int32)
  states = {
      "semseg": metrics.segmentation_state(z, z - 1, C),
      "depth": metrics.depth_state(np.ones((1, 3, 4, 1)), np.zeros((1, 3, 4, 1))),
      "normal": metrics.normals_state(np.ones((1, 3, 4, 3)), np.zeros((1, 3, 4, 3))),
  }
  assert metrics.finalize_all(states) == {"semseg": {}, "depth": {}, "normal": {}}


# ---- jit ----


def test_state_functions_run_under_jit():
  rng = np.random.default_rng(6)
  seg, depth, normal = _seg_batch(rng), _depth_batch(rng), _normal_batch(rng)

  @jax.jit
  def step(seg, depth, normal):
    state = {
        "semseg": metrics.segmentation_state(*seg, C),
        "depth": metrics.depth_state(*depth),
        "normal": metrics.normals_state(*normal),
    }
    return metrics.merge(state, state)

  got = metrics.finalize_all(jax.device_get(step(seg, depth, normal)))
  assert got["semseg"] == pytest.approx(_ref_seg(*seg)[1])
  _assert_close(got["depth"], _ref_depth(*depth))
  assert got["normal"]["mean"] == pytest.approx(_ref_angles(*normal).mean(), rel=1e-5)


# ---- Δm ----


def test_delta_m_hand_computed():
  refs = metrics.MTPSL_NYUV2_STL_REFERENCES["full"]
  results = {
      "semseg": {"miou": 40.0, "pixel_acc": 60.0},
      "depth": {"abs_err": 0.5},
      "normal": {"mean": 26.0, "median": 20.0},
  }
  # ((40 - 37.4474)/37.4474 - (0.5 - 0.607902)/0.607902 - (26 - 25.938105)/25.938105) / 3 * 100
  assert metrics.delta_m(results, refs) == pytest.approx(
      (6.816495 + 17.749900 - 0.238626) / 3, abs=1e-5
  )
  # Absent entries are skipped; T counts only the entries used.
  assert metrics.delta_m({"depth": {"abs_err": 0.5}, "normal": {}}, refs) == pytest.approx(
      17.749900, abs=1e-5
  )
  assert metrics.delta_m({"semseg": {}}, refs) is None


def test_references_cover_all_settings_with_known_directions():
  assert set(metrics.MTPSL_NYUV2_STL_REFERENCES) == {"full", "onelabel", "randomlabels"}
  assert metrics.MTPSL_NYUV2_STL_REFERENCES["onelabel"]["depth"]["abs_err"] == 0.771502
  for ref in metrics.MTPSL_NYUV2_STL_REFERENCES.values():
    assert all(m in metrics.HIGHER_IS_BETTER for task in ref.values() for m in task)


# ---- errors ----


def test_errors():
  with pytest.raises(ValueError, match="shape"):
    metrics.segmentation_state(np.zeros((2, 3), np.int32), np.zeros((2, 4), np.int32), C)
  with pytest.raises(ValueError, match="integer"):
    metrics.segmentation_state(np.zeros((2, 3)), np.zeros((2, 3), np.int32), C)
  with pytest.raises(ValueError, match="shape"):  # [B, H, W] vs [B, H, W, 1] must not broadcast
    metrics.depth_state(np.zeros((1, 2, 3)), np.zeros((1, 2, 3, 1)))
  with pytest.raises(ValueError, match="trailing dimension of 3"):
    metrics.normals_state(np.zeros((1, 2, 3, 1)), np.zeros((1, 2, 3, 1)))
  with pytest.raises(ValueError, match="unknown metric state keys"):
    metrics.finalize({"abs_sum": 1.0})
  with pytest.raises(ValueError, match="different structure"):
    metrics.merge({"a": 1.0}, {"b": 1.0})
  with pytest.raises(ValueError, match="no direction"):
    metrics.delta_m({"t": {"bogus": 1.0}}, {"t": {"bogus": 2.0}})
