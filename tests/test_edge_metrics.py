"""Tests of mtjax.edge_metrics: BSDS boundary odsF / oisF / AP (SEISM and MTI-Net protocols).

References: shared/reference/DATA_AND_METRICS.md, "Metrics for the PASCAL and NYUD-MT tasks". The
comparison with pyEdgeEval 0.2.8 (its Cython ports of BSDS ``correspondPixels`` and Piotr's NMS)
skips with a reason when pyEdgeEval is not importable.
"""

import dataclasses
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy import optimize
from skimage import morphology

from mtjax import edge_metrics as em

try:
  with warnings.catch_warnings():  # its scipy.ndimage.morphology import is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyEdgeEval._lib import correspond_pixels as pee_correspond_pixels
    from pyEdgeEval._lib import nms as pee_nms
    from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold
    from pyEdgeEval.preprocess import binary_thin as pee_binary_thin

  _PEE_REASON = ""
except ImportError as err:  # pragma: no cover - depends on the environment
  _PEE_REASON = (f"pyEdgeEval is not importable ({err}); install the test extra "
                 "(pyEdgeEval==0.2.8 builds from its sdist with g++)")

needs_pee = pytest.mark.skipif(bool(_PEE_REASON), reason=_PEE_REASON or "ok")


def _protocol(max_dist, thresholds=(0.5,), **kwargs):
  """A plain test protocol: no quantization, NMS or thinning unless asked."""
  fields = dict(nms=False, strict=False, thin_prediction=False, thin_gt=False, quantize=False)
  fields.update(kwargs)
  return em.EdgeProtocol(name="test", max_dist=max_dist, thresholds=tuple(thresholds), **fields)


@pytest.fixture(scope="module")
def maps():
  """Six synthetic 60 x 80 (prob, gt) pairs: diagonal 100 px, so max_dist 0.03 -> r = 3 px."""
  return em.synthetic_edge_maps(6, 60, 80, seed=3)


# ----------------------------------------------------------------------------------------------
# Protocols.


def test_protocols_are_the_published_settings():
  assert em.MTI_THRESHOLDS == tuple(round(0.01 * k, 2) for k in range(1, 100))
  assert len(em.HED_THRESHOLDS) == 101
  assert em.HED_THRESHOLDS[:3] == (0.001, 0.01, 0.02) and em.HED_THRESHOLDS[-2:] == (0.99, 0.999)
  p = em.PROTOCOLS
  assert (p["mtinet_nyud"].max_dist, p["mtinet_pascal"].max_dist) == (0.011, 0.0075)
  assert (p["seism_nyud"].max_dist, p["seism_pascal"].max_dist) == (0.011, 0.0075)
  for name in ("mtinet_nyud", "mtinet_pascal"):
    assert p[name].thresholds == em.MTI_THRESHOLDS and not p[name].nms and not p[name].strict
  for name in ("seism_nyud", "seism_pascal"):
    assert p[name].thresholds == em.HED_THRESHOLDS and p[name].nms and p[name].strict
  for name, proto in p.items():
    assert proto.name == name and proto.quantize and proto.thin_prediction and proto.thin_gt
  assert em.DEFAULT_PROTOCOL in p
  assert set(em.DEFAULT_PROTOCOLS_BY_DATASET.values()) <= set(p)


def test_bad_protocols_and_names_raise():
  with pytest.raises(ValueError, match="strictly increasing"):
    _protocol(0.01, thresholds=(0.5, 0.4))
  with pytest.raises(ValueError, match="max_dist"):
    _protocol(0.0)
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    _protocol(0.01, thresholds=(0.5, 1.5))
  with pytest.raises(ValueError, match="unknown edge protocol"):
    em.get_protocol("bsds")


# ----------------------------------------------------------------------------------------------
# Morphology.


def test_thin_equals_skimage_thin():
  rng = np.random.default_rng(0)
  for i in range(30):
    if i % 3 == 0:
      mask = rng.random((37, 53)) < 0.5
    else:
      mask = ndimage.gaussian_filter(rng.random((37, 53)), 1 + i % 4) > 0.5 + 0.01 * (i % 5)
    np.testing.assert_array_equal(em.thin(mask), morphology.thin(mask))
  full = np.ones((20, 30), bool)
  np.testing.assert_array_equal(em.thin(full), morphology.thin(full))


def test_seg_to_boundaries_as_seg2bmap():
  seg = np.array([[1, 1, 2],
                  [1, 1, 2],
                  [3, 3, 3]])
  # A pixel differs from its E, S or SE neighbour; last row: E only; last column: S only.
  expected = np.array([[0, 1, 0],
                       [1, 1, 1],
                       [0, 0, 0]], bool)
  np.testing.assert_array_equal(em.seg_to_boundaries(seg), expected)


# ----------------------------------------------------------------------------------------------
# Matching: hand-made cases with exact answers (60 x 80: diagonal 100 px).


def _line_maps(shift, length=30, col=20):
  gt = np.zeros((60, 80), np.uint8)
  gt[10:10 + length, col] = 1
  prob = np.zeros((60, 80), np.float32)
  prob[10:10 + length, col + shift] = 0.9
  return prob, gt


def test_shift_within_radius_matches_everything():
  prob, gt = _line_maps(shift=1)
  counts = em.edge_counts(prob, gt, _protocol(0.011))  # r = 1.1 px
  np.testing.assert_array_equal(counts, [[30, 30, 30, 30]])


def test_shift_beyond_radius_matches_nothing():
  prob, gt = _line_maps(shift=2)
  counts = em.edge_counts(prob, gt, _protocol(0.011))  # r = 1.1 < 2
  np.testing.assert_array_equal(counts, [[0, 30, 0, 30]])
  # The radius is inclusive (u^2 + v^2 <= r^2, match.cc): 2 px at r = 2 matches.
  np.testing.assert_array_equal(em.edge_counts(prob, gt, _protocol(0.02)), [[30, 30, 30, 30]])


def test_matching_is_one_to_one():
  gt = np.zeros((60, 80), np.uint8)
  gt[30, 40] = 1
  prob = np.zeros((60, 80), np.float32)
  prob[30, 39] = prob[30, 41] = 0.8
  np.testing.assert_array_equal(em.edge_counts(prob, gt, _protocol(0.011)), [[1, 1, 1, 2]])


def test_matching_is_maximum_not_greedy():
  # Greedy nearest matching would pair p1 with g0 (distance 0) and leave p0 unmatched.
  gt = np.zeros((60, 80), np.uint8)
  prob = np.zeros((60, 80), np.float32)
  gt[30, 40] = gt[30, 42] = 1  # g0, g1
  prob[30, 39] = prob[30, 40] = 0.8  # p0 (only near g0), p1 (near g0 and, at r = 2, g1)
  np.testing.assert_array_equal(em.edge_counts(prob, gt, _protocol(0.02)), [[2, 2, 2, 2]])


def _hungarian_max_matching(pred, gt, radius):
  """Independent reference: max-cardinality matching via a dense min-cost assignment."""
  p, g = np.argwhere(pred), np.argwhere(gt)
  if len(p) == 0 or len(g) == 0:
    return 0
  d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1).astype(np.float64)
  cost = (d2 > radius * radius).astype(np.float64)  # 0 within r, 1 beyond: maximise the zeros
  rows, cols = optimize.linear_sum_assignment(cost)
  return int(np.count_nonzero(cost[rows, cols] == 0))


def test_matching_equals_brute_force_assignment():
  rng = np.random.default_rng(7)
  for i in range(12):
    gt = (rng.random((30, 40)) < 0.05 + 0.02 * (i % 3)).astype(np.uint8)
    prob = (rng.random((30, 40)) < 0.06).astype(np.float32) * 0.9
    max_dist = (0.02, 0.04, 0.06)[i % 3]  # r = 1, 2, 3 px (diagonal 50)
    counts = em.edge_counts(prob, gt, _protocol(max_dist))
    expected = _hungarian_max_matching(prob > 0, gt == 1, max_dist * 50.0)
    np.testing.assert_array_equal(counts, [[expected, gt.sum(), expected, (prob > 0).sum()]])


def test_counts_over_thresholds_equal_an_independent_reference():
  # Each threshold's matching starts from the previous one's (warm start): compare every threshold
  # with thinning (skimage) + a from-scratch dense assignment.
  probs, gts = em.synthetic_edge_maps(3, 40, 50, seed=9)
  gts[2, 5:20, 10:30] = 255
  proto = _protocol(0.04, thresholds=np.linspace(0.05, 0.95, 10), quantize=True,
                    thin_prediction=True, thin_gt=True)  # r = 0.04 * 64.03 = 2.56 px
  radius = 0.04 * math.hypot(40, 50)
  for prob, gt in zip(probs, gts):
    counts = em.edge_counts(prob, gt, proto)
    e = np.floor(prob * np.float32(255)) / 255.0
    g = morphology.thin(gt == 1)
    for k, t in enumerate(proto.thresholds):
      b = morphology.thin(e >= t) & (gt != 255)
      m = _hungarian_max_matching(b, g, radius)
      np.testing.assert_array_equal(counts[k], [m, g.sum(), m, b.sum()])


def test_ignore_pixels_are_removed_from_gt_and_prediction():
  prob, gt = _line_maps(shift=1)
  gt[25:60, :] = 255  # rows 25.. of both lines are ignored
  counts = em.edge_counts(prob, gt, _protocol(0.011))
  np.testing.assert_array_equal(counts, [[15, 15, 15, 15]])


def test_thresholds_binarize_with_and_without_strict():
  prob = np.zeros((60, 80), np.float32)
  prob[10:20, 30] = 0.5
  gt = np.zeros((60, 80), np.uint8)
  gt[10:20, 30] = 1
  ge = em.edge_counts(prob, gt, _protocol(0.011, thresholds=(0.25, 0.5, 0.75)))
  gt_strict = em.edge_counts(prob, gt, _protocol(0.011, thresholds=(0.25, 0.5, 0.75), strict=True))
  np.testing.assert_array_equal(ge[:, 3], [10, 10, 0])
  np.testing.assert_array_equal(gt_strict[:, 3], [10, 0, 0])


def test_quantization_is_floor_of_png():
  prob = np.zeros((60, 80), np.float32)
  prob[10:20, 30] = 0.2 - 1e-6  # floor(255 * p) = 50 < 51 = 255 * 0.2
  gt = np.zeros((60, 80), np.uint8)
  gt[10:20, 30] = 1
  quantized = em.edge_counts(prob, gt, _protocol(0.011, thresholds=(0.199, 0.2), quantize=True))
  raw = em.edge_counts(prob, gt, _protocol(0.011, thresholds=(0.199, 0.2)))
  np.testing.assert_array_equal(quantized[:, 3], [0, 0])  # 50 / 255 = 0.196 < 0.199
  np.testing.assert_array_equal(raw[:, 3], [10, 0])


def test_bad_inputs_raise_value_error():
  prob, gt = _line_maps(shift=1)
  with pytest.raises(ValueError, match="one shape"):
    em.edge_counts(prob[:, :-1], gt)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    em.edge_counts(prob * 2, gt)
  with pytest.raises(ValueError, match="float"):
    em.edge_counts((prob > 0).astype(np.uint8), gt)
  bad = gt.copy()
  bad[0, 0] = 2
  with pytest.raises(ValueError, match="255"):
    em.edge_counts(prob, bad)
  with pytest.raises(ValueError, match=r"\[B, H, W"):
    em.edge_state(prob, gt)
  with pytest.raises(ValueError, match="num_workers"):
    em.edge_state(prob[None], gt[None], num_workers=0)


# ----------------------------------------------------------------------------------------------
# Batch state, pooling and finalize.


def test_edge_state_is_additive_and_pooled_like_seism(maps):
  probs, gts = maps
  proto = _protocol(0.03, thresholds=(0.1, 0.3, 0.5, 0.7), quantize=True, thin_prediction=True,
                    thin_gt=True)
  whole = em.edge_state(probs[..., None], gts[..., None], proto)
  parts = em.merge_edge_states(em.edge_state(probs[:2], gts[:2], proto),
                               em.edge_state(probs[2:], gts[2:], proto))
  for key in whole:
    np.testing.assert_array_equal(whole[key], parts[key])
  assert int(whole["images"]) == 6
  per_image = [em.edge_counts(probs[i], gts[i], proto) for i in range(6)]
  np.testing.assert_array_equal(whole["ods_counts"], np.sum(per_image, axis=0))
  # OIS: each image's counts at its own best-F threshold.
  best = []
  for c in per_image:
    r, p = c[:, 0] / c[:, 1], c[:, 2] / np.maximum(c[:, 3], 1)
    f = np.where(r + p > 0, 2 * r * p / np.maximum(r + p, 1e-300), 0)
    best.append(c[int(np.argmax(f))])
  np.testing.assert_array_equal(whole["ois_counts"], np.sum(best, axis=0))


def test_process_pool_equals_serial(maps):
  probs, gts = maps
  proto = _protocol(0.03, thresholds=(0.2, 0.6), quantize=True, thin_prediction=True)
  serial = em.edge_state(probs[:4], gts[:4], proto)
  try:
    pooled = em.edge_state(probs[:4], gts[:4], proto, num_workers=2)
  finally:
    em.shutdown_pools()
  for key in serial:
    np.testing.assert_array_equal(serial[key], pooled[key])


def test_images_without_gt_or_prediction_contribute_zeros():
  probs = np.zeros((2, 60, 80), np.float32)
  gts = np.zeros((2, 60, 80), np.uint8)
  state = em.edge_state(probs, gts, "mtinet_nyud")
  assert not state["ods_counts"].any() and not state["ois_counts"].any()
  assert int(state["images"]) == 2
  assert em.finalize_edges(state, "mtinet_nyud") == {}
  assert em.finalize_edges(em.empty_edge_state("seism_pascal"), "seism_pascal") == {}
  # Predictions without gt count as false positives at every threshold.
  probs[0, 10:20, 10] = 0.5
  state = em.edge_state(probs, gts, "mtinet_nyud")
  assert state["ods_counts"][0, 3] == 10 and state["ods_counts"][-1, 3] == 0
  assert em.finalize_edges(state, "mtinet_nyud") == {}


def test_finalize_known_counts():
  proto = _protocol(0.01, thresholds=(0.2, 0.5, 0.8))
  state = {
      # (cntR, sumR, cntP, sumP): R = .8 .6 .2, P = .4 .6 .8 -> F = .5333 .6 .32
      "ods_counts": np.array([[80, 100, 40, 100], [60, 100, 60, 100], [20, 100, 40, 50]]),
      "ois_counts": np.array([70, 100, 70, 100]),
      "images": np.array(3),
  }
  out = em.finalize_edges(state, proto)
  assert set(out) == {"odsF", "oisF", "ap"}
  assert out["odsF"] == pytest.approx(60.0)
  assert out["oisF"] == pytest.approx(70.0)
  # AP: P interpolated over R in [0.2, 0.8] at 0.2, 0.21, ..., 0.8: linear pieces (0.2, 0.8) ->
  # (0.6, 0.6) -> (0.8, 0.4); the 61 samples sum to 36.6, / 100.
  grid = np.round(np.arange(20, 81) / 100, 2)
  expected = np.interp(grid, [0.2, 0.6, 0.8], [0.8, 0.6, 0.4]).sum() / 100
  assert out["ap"] == pytest.approx(100 * expected)
  with pytest.raises(ValueError, match="do not match"):
    em.finalize_edges(state, "mtinet_nyud")


# ----------------------------------------------------------------------------------------------
# SEISM NMS.


def test_orientation_of_straight_edges():
  e = np.zeros((40, 40), np.float32)
  e[:, 20] = 1.0  # vertical edge: orientation (of the normal, x = columns) ~ 0
  o = em.edge_orientation(e)
  assert np.all(np.minimum(o[10:30, 18:23], np.pi - o[10:30, 18:23]) < 0.05)
  # Diagonal ridge along x = y: normal along (1, -1), 3 pi / 4 on the ridge.
  e = np.eye(40, dtype=np.float32)
  o = em.edge_orientation(e)
  ridge = np.diagonal(o)[8:32]
  assert np.all(np.abs(ridge - 3 * np.pi / 4) < 0.05)
  # SEISM's formula multiplies by sign(-Oxy), which is 0 on an exactly horizontal edge: O = 0.
  horizontal = np.zeros((40, 40), np.float32)
  horizontal[20] = 1.0
  assert np.all(em.edge_orientation(horizontal) == 0)


def test_nms_thins_a_blurred_ridge_and_damps_borders():
  x = np.arange(40, dtype=np.float32)
  e = np.tile(np.exp(-0.5 * ((x - 20) / 2) ** 2), (40, 1)).astype(np.float32)
  out = em.edge_nms(e, None)
  rows = out[10:30]
  assert np.all(np.count_nonzero(rows, axis=1) == 1) and np.all(rows[:, 20] > 0)
  assert np.all(out[0] == 0) and np.all(out[:, 0] == 0)
  np.testing.assert_allclose(out[2, 20], e[2, 20] * 2 / 5, rtol=1e-6)


@needs_pee
def test_nms_equals_pyedgeeval_nms(maps):
  probs, _ = maps
  for prob in probs[:3]:
    e = np.floor(prob * 255).astype(np.float32) / np.float32(255)
    o = em.edge_orientation(e)
    ours = em.edge_nms(e, o)
    theirs = pee_nms(e.astype(np.float64), o.astype(np.float64), r=1, s=5, m=1.01)
    # pyEdgeEval computes in double, Piotr's mex (and we) in single: ties may flip.
    differ = (ours > 0) != (theirs > 0)
    assert differ.mean() < 1e-3
    np.testing.assert_allclose(ours[~differ], theirs[~differ], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Agreement with pyEdgeEval's correspond_pixels (BSDS match.cc) evaluation.


def _pee_counts(prob, gt, proto):
  """Counts by pyEdgeEval's BSDS correspond_pixels on maps prepared as SEISM does."""
  levels = np.floor(prob * np.float32(255))
  if proto.nms:
    e = levels.astype(np.float32) / np.float32(255)
    e = pee_nms(e.astype(np.float64), em.edge_orientation(e).astype(np.float64), r=1, s=5, m=1.01)
    e = e.astype(np.float32).astype(np.float64)
  else:
    e = levels / 255.0
  g = morphology.thin(gt == 1)
  out = []
  for t in proto.thresholds:
    b = morphology.thin(e > t if proto.strict else e >= t)
    match_p, match_g, _, _ = pee_correspond_pixels(
        b.astype(np.float64), g.astype(np.float64), max_dist=proto.max_dist)
    out.append(((match_g > 0).sum(), g.sum(), (match_p > 0).sum(), b.sum()))
  return np.array(out, np.int64)


def _f(counts):
  return em.edge_pr_curve({"ods_counts": counts})[2]


@needs_pee
@pytest.mark.parametrize("name", ["mtinet_nyud", "seism_nyud"])
def test_counts_and_f_agree_with_pyedgeeval(maps, name):
  probs, gts = maps
  # Every 4th threshold (25 / 26 of 99 / 101) keeps it fast; max_dist 0.03 -> r = 3 px here.
  base = em.PROTOCOLS[name]
  proto = dataclasses.replace(base, max_dist=0.03, thresholds=base.thresholds[::4])
  ours = np.stack([em.edge_counts(probs[i], gts[i], proto) for i in range(4)])
  ref = np.stack([_pee_counts(probs[i], gts[i], proto) for i in range(4)])
  np.testing.assert_array_equal(ours[..., 1], ref[..., 1])  # sumR
  if not proto.nms:  # (with NMS, float32 vs pyEdgeEval's float64 ties may flip a pixel)
    np.testing.assert_array_equal(ours[..., 3], ref[..., 3])  # sumP
    # BSDS solves the assignment with a sparse random outlier graph: it can miss a few matches
    # that the exact maximum matching finds, never the reverse.
    assert np.all(ours[..., 0] >= ref[..., 0])
  rel = np.abs(ours[..., 0] - ref[..., 0]) / np.maximum(ref[..., 1], 1)
  assert rel.max() < 0.02
  f_ours, f_ref = _f(ours.sum(0)), _f(ref.sum(0))
  assert abs(f_ours.max() - f_ref.max()) < 0.002  # odsF
  np.testing.assert_allclose(f_ours, f_ref, atol=0.004)


@needs_pee
def test_ods_agrees_with_pyedgeeval_evaluate_boundaries(maps):
  """pyEdgeEval's own per-image evaluation (binary_thin, >=, no NMS) as MTI-Net's protocol."""
  probs, gts = maps
  proto = dataclasses.replace(em.PROTOCOLS["mtinet_nyud"], max_dist=0.03,
                              thresholds=em.MTI_THRESHOLDS[::3])
  ours = sum(em.edge_counts(probs[i], gts[i], proto) for i in range(4))
  ref = 0
  for i in range(4):
    e = np.floor(probs[i] * np.float32(255)) / 255.0
    g = pee_binary_thin(gts[i] == 1)
    c = evaluate_boundaries_threshold(np.array(proto.thresholds), e, g, max_dist=proto.max_dist,
                                      apply_thinning=True, apply_nms=False)
    ref = ref + np.stack(c, axis=1).astype(np.int64)
  # pyEdgeEval's binary_thin stops when one subiteration changes nothing (MATLAB, skimage and we
  # stop after a whole iteration without change), so it can keep a pixel more: sums differ by a
  # few pixels, F by far less than 0.002.
  assert np.abs(ours[:, 3] - ref[:, 3]).max() <= 0.01 * ref[:, 3].max()
  assert abs(_f(ours).max() - _f(ref).max()) < 0.002


def test_matching_radius_follows_the_diagonal():
  # 0.0075 * 100 = 0.75 px on 60 x 80: only coincident pixels match; 0.011 -> 1.1 px.
  prob, gt = _line_maps(shift=1)
  assert em.edge_counts(prob, gt, _protocol(0.0075))[0, 0] == 0
  assert em.edge_counts(prob, gt, _protocol(0.011))[0, 0] == 30
  assert math.isclose(0.011 * math.hypot(480, 640), 8.8)
