"""Tests for the saliency and human-parts metrics (mtjax.saliency_metrics, mtjax.metrics).

Each state is checked against an independent float64 NumPy reference written here as the
reference evaluators loop: per pixel / per image, per threshold (DATA_AND_METRICS.md "Metrics for
the PASCAL and NYUD-MT tasks").
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax import metrics, saliency_metrics

PROTOCOLS = ("pooled", "per_image", "invpt")
IGNORE = 255.0


# ------------------------------------------------------------------------------------------------
# NumPy references.


def _ref_thresholds(protocol):
  if protocol == "per_image":
    return np.linspace(0.2, 0.9, 15)  # float64, compared with the float32 map promoted to float64
  return np.arange(0.05, 1, 0.05).astype(np.float32)  # torch.arange: float32


def _ref_saliency(prob, gt, protocol):
  """{"maxF", "miou"} in percent, or {} — the loops of ATRC / InvPT / MTI's evaluators."""
  prob = np.asarray(prob, np.float32).reshape(-1, *np.shape(prob)[-3:-1])
  gt = np.asarray(gt, np.float64).reshape(prob.shape)
  thresholds = _ref_thresholds(protocol)
  if protocol == "per_image":
    rows = []
    for p, g in zip(prob, gt):
      void = g == IGNORE
      if void.all():
        continue  # a padded / all-ignore image is not counted
      pos = (g == 1) & ~void
      row = []
      for t in thresholds:
        pred = (p.astype(np.float64) > t) & ~void
        tp, fp, fn = np.sum(pred & pos), np.sum(pred & ~pos), np.sum(~pred & pos)
        jac = 1.0 if pred.sum() == 0 and pos.sum() == 0 else tp / np.sum(pred | pos)
        row.append((tp / (tp + fp + 1e-12), tp / (tp + fn + 1e-12), jac))
      rows.append(row)
    if not rows:
      return {}
    mean = np.mean(np.array(rows, np.float64), axis=0)  # [T, 3]
    precision, recall, jac = mean.T
    f = 2 * precision * recall / (precision + recall + 1e-12)
    return {"maxF": np.max(f) * 100, "miou": np.max(jac) * 100}

  valid = gt != IGNORE
  if not valid.any():
    return {}
  if protocol == "invpt":
    score = (1 / (1 + np.exp(-prob.astype(np.float64)))).astype(np.float32)
  else:
    score = prob
  target = gt[valid].astype(np.int64)
  fs = []
  for t in thresholds:
    pred = (score[valid] >= t).astype(np.int64)
    tp, predicted, actual = np.sum(pred * target), np.sum(pred), np.sum(target)
    with np.errstate(divide="ignore", invalid="ignore"):
      precision, recall = np.float64(tp) / predicted, np.float64(tp) / actual
      f = 1.3 * precision * recall / (0.3 * precision + recall)
    fs.append(0.0 if np.isnan(f) else f)
  pred = prob[valid] >= 0.5
  ious = []
  for cls_gt, cls_pred in ((target == 0, ~pred), (target == 1, pred)):
    tp, fp, fn = np.sum(cls_gt & cls_pred), np.sum(~cls_gt & cls_pred), np.sum(cls_gt & ~cls_pred)
    ious.append(tp / max(tp + fp + fn, 1e-8))
  return {"maxF": max(fs) * 100, "miou": np.mean(ious) * 100}


def _ref_parts(pred, labels, num_classes):
  """(mIoU % or None, number of images counted): MTI's eval_human_parts loop, -1 for 255."""
  labels = np.asarray(labels).reshape(-1, *np.shape(labels)[-2:])
  pred = np.asarray(pred).reshape(labels.shape)
  tp, fp, fn = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
  counted = 0
  for p, g in zip(pred, labels):
    if not np.any((g >= 1) & (g < num_classes)):
      continue  # all background, all ignore, or both
    counted += 1
    valid = g != -1
    for c in range(num_classes):
      tp[c] += np.sum((g == c) & (p == c) & valid)
      fp[c] += np.sum((g != c) & (p == c) & valid)
      fn[c] += np.sum((g == c) & (p != c) & valid)
  if counted == 0:
    return None, 0
  return np.mean(tp / np.maximum(tp + fp + fn, 1e-8)) * 100, counted


# Every saliency batch in this file has this shape (or SHAPE_HALF, for the batch splits), so each
# protocol compiles twice: small cases are packed into it, the rest of the batch ignored.
SHAPE = (4, 8, 16, 1)
SHAPE_HALF = (2, 8, 16, 1)


def _pack(probs, gts):
  """Small [h, w] maps -> a SHAPE batch: one map per image, every other pixel / image ignored."""
  prob = np.full(SHAPE, 0.5, np.float32)
  gt = np.full(SHAPE, IGNORE, np.float32)
  for i, (p, g) in enumerate(zip(probs, gts)):
    h, w = np.shape(p)
    prob[i, :h, :w, 0], gt[i, :h, :w, 0] = p, g
  return prob, gt


def _random_saliency(rng, shape=SHAPE):
  prob = rng.random(shape).astype(np.float32)
  gt = (rng.random(shape) < 0.4).astype(np.float32)
  gt = np.where(rng.random(shape) < 0.15, IGNORE, gt).astype(np.float32)
  prob = np.clip(prob + 0.3 * (gt == 1), 0, 1).astype(np.float32)  # informative predictions
  gt[1] = IGNORE  # a padded example
  gt[2, 0, 0, 0], gt[2, 0, 1, 0] = 1.0, 0.0  # image 2 surely has both classes
  return prob, gt


def _finalize(prob, gt, protocol):
  return saliency_metrics.finalize_saliency(saliency_metrics.saliency_state(prob, gt, protocol=protocol), protocol)


# ------------------------------------------------------------------------------------------------
# Saliency.

# One 2x3 map; the right column is ignored (its prediction must not matter).
_HAND_PROB = np.array([[0.92, 0.63, 0.99], [0.33, 0.12, 0.99]], np.float32)
_HAND_GT = np.array([[1, 0, IGNORE], [1, 0, IGNORE]], np.float32)


def test_pooled_by_hand():
  # Valid pixels (prob, gt): (.92, 1), (.63, 0), (.33, 1), (.12, 0); actual positives 2; β² 0.3.
  # t = .05, .10:      all 4 predicted, tp 2: P .5,  R 1  -> F = 1.3 * .5 / 1.15    = .5652
  # t = .15 ... .30:   {.92, .63, .33}, tp 2: P 2/3, R 1  -> F = 1.3 * 2/3 / 1.2    = .7222
  # t = .35 ... .60:   {.92, .63},      tp 1: P .5,  R .5 -> F                      = .5
  # t = .65 ... .90:   {.92},           tp 1: P 1,   R .5 -> F = 1.3 * .5 / .8      = .8125
  # t = .95:           none             -> P NaN -> F 0.           maxF = 81.25 %.
  # mIoU at prob >= .5: salient tp 1 (.92), fp 1 (.63), fn 1 (.33) -> 1/3; background tp 1 (.12),
  # fp 1 (.33), fn 1 (.63) -> 1/3; mean 33.33 %.
  prob, gt = _pack([_HAND_PROB], [_HAND_GT])
  out = _finalize(prob, gt, "pooled")
  assert out == pytest.approx({"maxF": 81.25, "miou": 100 / 3})
  assert out == pytest.approx(_ref_saliency(prob, gt, "pooled"))


def test_invpt_double_sigmoid_by_hand():
  # prob .95 / .90 salient-predicted-high (gt 1 / 0), .10 / .05 (gt 0 / 1).
  # pooled: t = .95 -> {.95}: P 1, R .5 -> F .8125 = maxF.
  # invpt: sigmoid -> .7211, .7109, .5250, .5125. t <= .5: all 4, tp 2: P .5, R 1 -> .5652;
  # t = .55 ... .70: {.95, .90}, tp 1: P .5, R .5 -> .5; t >= .75: none -> 0. maxF = 56.52 %.
  prob, gt = _pack([[[0.95, 0.90], [0.10, 0.05]]], [[[1, 0], [0, 1]]])
  assert _finalize(prob, gt, "pooled")["maxF"] == pytest.approx(81.25)
  out = _finalize(prob, gt, "invpt")
  assert out["maxF"] == pytest.approx(1.3 * 0.5 / 1.15 * 100)
  # mIoU binarises prob (not sigmoid(prob)) at .5: salient 1/3, background 1/3.
  assert out["miou"] == pytest.approx(100 / 3)
  assert out == pytest.approx(_ref_saliency(prob, gt, "invpt"))


def test_per_image_by_hand():
  # Image 0 = the hand map above (ignored column excluded); strict >, linspace(.2, .9, 15):
  #   t = .20, .25, .30 (3):    {.92, .63, .33}: tp 2 fp 1 fn 0 -> P 2/3, R 1,  J 2/3
  #   t = .35 ... .60   (6):    {.92, .63}:      tp 1 fp 1 fn 1 -> P .5,  R .5, J 1/3
  #   t = .65 ... .90   (6):    {.92}:           tp 1 fp 0 fn 1 -> P 1,   R .5, J 1/2
  # Image 1: gt all 0, prob < .2: nothing predicted -> P 0, R 0 (the 1e-12), J 1 (both empty).
  # Means over 2 images, F = 2PR / (P + R):
  #   first 3:  P 1/3, R 1/2  -> F .4,   J 5/6
  #   next 6:   P 1/4, R 1/4  -> F .25,  J 2/3
  #   last 6:   P 1/2, R 1/4  -> F 1/3,  J 3/4        maxF 40 %, mIoU 83.33 %.
  # Images 2 and 3: all ignore (padded examples): not counted.
  prob, gt = _pack(
      [_HAND_PROB, [[0.1, 0.05, 0.15], [0.0, 0.1, 0.19]]], [_HAND_GT, np.zeros((2, 3))]
  )
  state = saliency_metrics.saliency_state(prob, gt, protocol="per_image")
  assert int(state["image_count"]) == 2
  out = saliency_metrics.finalize_saliency(state, "per_image")
  assert out == pytest.approx({"maxF": 40.0, "miou": 250 / 3})
  assert out == pytest.approx(_ref_saliency(prob, gt, "per_image"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_maps_match_reference(protocol):
  rng = np.random.default_rng(0)
  prob, gt = _random_saliency(rng)
  out = _finalize(prob, gt, protocol)
  assert out == pytest.approx(_ref_saliency(prob, gt, protocol), rel=1e-5)
  assert 0 < out["maxF"] <= 100 and 0 < out["miou"] <= 100


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_probabilities_on_the_thresholds(protocol):
  # png-quantised maps (k / 255, as MTI's offline evaluator reads them) and the float32 neighbours
  # of every threshold: each comparison must decide as the reference's float64 (NumPy) or float32
  # (PyTorch) comparison does. E.g. float32(51 / 255) = 0.2000000030 > 0.2 in float64.
  t = np.concatenate([np.linspace(0.2, 0.9, 15), np.arange(0.05, 1, 0.05)]).astype(np.float32)
  near = np.concatenate([t, np.nextafter(t, 0), np.nextafter(t, 1), np.arange(256) / 255])
  near = np.pad(near, (0, 3 * 128 - near.size), constant_values=0.5).astype(np.float32)
  gt = (np.arange(near.size) % 3 == 0).astype(np.float32)
  prob, gt = _pack(near.reshape(3, 8, 16), gt.reshape(3, 8, 16))
  assert _finalize(prob, gt, protocol) == pytest.approx(_ref_saliency(prob, gt, protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ignore_pixels_do_not_count(protocol):
  rng = np.random.default_rng(1)
  prob, gt = _random_saliency(rng)
  flipped = np.where(gt == IGNORE, 1 - prob, prob).astype(np.float32)  # change ignored predictions
  a = saliency_metrics.saliency_state(prob, gt, protocol=protocol)
  b = saliency_metrics.saliency_state(flipped, gt, protocol=protocol)
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_all_ignore_is_absent(protocol):
  prob, gt = _pack([], [])
  assert _finalize(prob, gt, protocol) == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_state_is_additive_over_batch_splits(protocol):
  rng = np.random.default_rng(2)
  prob, gt = _random_saliency(rng)
  whole = saliency_metrics.saliency_state(prob, gt, protocol=protocol)
  halves = metrics.merge(
      saliency_metrics.saliency_state(prob[:2], gt[:2], protocol=protocol),
      saliency_metrics.saliency_state(prob[2:], gt[2:], protocol=protocol),
  )
  assert set(whole) == set(halves)
  for k in whole:
    np.testing.assert_allclose(np.asarray(whole[k]), np.asarray(halves[k]), rtol=1e-6)
    assert whole[k].dtype == (jnp.float32 if k.endswith("_sum") else jnp.int32)
  assert saliency_metrics.finalize_saliency(halves, protocol) == pytest.approx(
      saliency_metrics.finalize_saliency(whole, protocol)
  )


def test_state_keys_and_shapes():
  prob, gt = _random_saliency(np.random.default_rng(3))
  pooled = saliency_metrics.saliency_state(prob, gt)  # default protocol
  assert {k: v.shape for k, v in pooled.items()} == {
      "true_positives": (19,),
      "predicted_positives": (19,),
      "actual_positives": (),
      "valid_count": (),
      "half_true_positives": (),
      "half_predicted_positives": (),
  }
  per_image = saliency_metrics.saliency_state(prob, gt, protocol="per_image")
  assert {k: v.shape for k, v in per_image.items()} == {
      "precision_sum": (15,),
      "recall_sum": (15,),
      "jaccard_sum": (15,),
      "image_count": (),
  }
  assert int(per_image["image_count"]) == 3  # image 1 is all ignore
  assert saliency_metrics.SALIENCY_PROTOCOLS["pooled"].beta_squared == 0.3
  assert saliency_metrics.SALIENCY_PROTOCOLS["per_image"].beta_squared == 1.0
  assert saliency_metrics.SALIENCY_PROTOCOLS["invpt"].double_sigmoid


def test_saliency_under_jit_and_single_image():
  prob, gt = _random_saliency(np.random.default_rng(4))

  @jax.jit
  def both(p, g):
    a = saliency_metrics.saliency_state(p, g, protocol="per_image")
    return metrics.merge(a, a)

  doubled = both(prob, gt)
  single = saliency_metrics.saliency_state(prob, gt, protocol="per_image")
  assert saliency_metrics.finalize_saliency(doubled, "per_image") == pytest.approx(
      saliency_metrics.finalize_saliency(single, "per_image")
  )
  # [H, W, 1] is one image.
  one = saliency_metrics.saliency_state(prob[2], gt[2], protocol="per_image")
  assert int(one["image_count"]) == 1
  assert saliency_metrics.finalize_saliency(one, "per_image") == pytest.approx(
      _ref_saliency(prob[2], gt[2], "per_image")
  )


def test_saliency_errors():
  prob = np.zeros(SHAPE, np.float32)
  with pytest.raises(ValueError, match="protocol"):
    saliency_metrics.saliency_state(prob, prob, protocol="nope")
  with pytest.raises(ValueError, match="prob dtype"):
    saliency_metrics.saliency_state(prob.astype(np.int32), prob)
  with pytest.raises(ValueError, match="shape"):
    saliency_metrics.saliency_state(prob, prob[..., 0])
  with pytest.raises(ValueError, match="trailing dimension"):
    saliency_metrics.saliency_state(np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.float32))
  with pytest.raises(ValueError, match=r"\[\.\.\., H, W, 1\]"):
    saliency_metrics.saliency_state(np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32))
  state = saliency_metrics.saliency_state(prob, prob)
  with pytest.raises(ValueError, match="expected"):
    saliency_metrics.finalize_saliency(state, "per_image")  # a pooled state
  with pytest.raises(ValueError, match="shape"):
    saliency_metrics.finalize_saliency({**state, "true_positives": np.zeros(3)}, "pooled")


def test_directions():
  for name in ("maxF", "odsF", "oisF", "ap", "miou"):
    assert metrics.HIGHER_IS_BETTER[name] is True


# ------------------------------------------------------------------------------------------------
# Human parts.

# Every parts batch has shape (6, 5, 4) (or (3, 5, 4) for the splits): five 1x4 maps, 3 classes
# (0 background, 1, 2 parts), -1 = ignore, packed into it; the rest ignored.
def _pack_parts(preds, gts):
  pred = np.zeros((6, 5, 4), np.int32)
  gt = np.full((6, 5, 4), -1, np.int32)
  pred[: len(preds), :1], gt[: len(gts), :1] = preds, gts
  return pred, gt


_PARTS_GT = np.array(
    [
        [0, 1, 1, 2],  # counted
        [0, 0, 0, 0],  # all background: skipped
        [-1, -1, -1, -1],  # all ignore (e.g. a padded example): skipped
        [0, -1, 0, -1],  # background and ignore only: skipped
        [-1, 1, 0, -1],  # counted
    ],
    np.int32,
)[:, None, :]
_PARTS_PRED = np.array(
    [[0, 1, 2, 2], [1, 1, 1, 1], [2, 2, 2, 2], [1, 1, 1, 1], [1, 1, 0, 0]], np.int32
)[:, None, :]


def test_parts_by_hand():
  # Counted pixels (gt -> pred): 0->0, 1->1, 1->2, 2->2 (image 0); 1->1, 0->0 (image 4).
  # class 0: tp 2, fp 0, fn 0 -> 1; class 1: tp 2, fn 1 -> 2/3; class 2: tp 1, fp 1 -> 1/2.
  # mIoU = (1 + 2/3 + 1/2) / 3 = 72.22 %.
  # With 7 classes (3 ... 6 absent everywhere): (1 + 2/3 + 1/2) / 7 = 30.95 %.
  pred, gt = _pack_parts(_PARTS_PRED, _PARTS_GT)
  state = metrics.parts_state(pred, gt, 3)
  assert int(state["image_count"]) == 2
  np.testing.assert_array_equal(state["confusion"], [[2, 0, 0], [0, 2, 1], [0, 0, 1]])
  assert metrics.finalize_parts(state) == pytest.approx({"miou": (1 + 2 / 3 + 1 / 2) / 3 * 100})
  seven = metrics.parts_state(pred, gt, 7)
  assert metrics.finalize_parts(seven) == pytest.approx({"miou": (1 + 2 / 3 + 1 / 2) / 7 * 100})
  assert metrics.finalize_parts(seven) == pytest.approx({"miou": _ref_parts(pred, gt, 7)[0]})
  # finalize's semseg rule would leave the absent classes out: the two rules differ here.
  seg = metrics.finalize({"confusion": seven["confusion"]})
  assert seg["miou"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3 * 100)


def test_parts_without_persons_is_absent():
  state = metrics.parts_state(*_pack_parts(_PARTS_PRED[1:4], _PARTS_GT[1:4]), 7)
  assert int(state["image_count"]) == 0
  assert int(np.sum(state["confusion"])) == 0
  assert metrics.finalize_parts(state) == {}


def test_parts_random_match_reference_and_are_additive():
  rng = np.random.default_rng(5)
  shape = (6, 5, 4)
  labels = rng.integers(-1, 7, size=shape).astype(np.int32)
  labels[1] = 0  # no person
  labels[2] = -1  # padded
  labels[3] = np.where(rng.random(shape[1:]) < 0.5, 0, -1)  # background + ignore only
  pred = rng.integers(0, 7, size=shape).astype(np.int32)
  state = metrics.parts_state(pred, labels, 7)
  ref_miou, ref_count = _ref_parts(pred, labels, 7)
  assert int(state["image_count"]) == ref_count == 3
  assert metrics.finalize_parts(state)["miou"] == pytest.approx(ref_miou)
  halves = metrics.merge(
      metrics.parts_state(pred[:3], labels[:3], 7), metrics.parts_state(pred[3:], labels[3:], 7)
  )
  jax.tree.map(np.testing.assert_array_equal, halves, state)
  jitted = jax.jit(lambda p, g: metrics.parts_state(p, g, 7))(pred, labels)
  jax.tree.map(np.testing.assert_array_equal, jitted, state)
  # [H, W] is one image.
  one = metrics.parts_state(pred[0], labels[0], 7)
  assert int(one["image_count"]) == 1
  assert metrics.finalize_parts(one)["miou"] == pytest.approx(_ref_parts(pred[0], labels[0], 7)[0])


def test_parts_errors():
  ids = np.zeros((1, 2, 2), np.int32)
  with pytest.raises(ValueError, match="shape"):
    metrics.parts_state(ids, ids[0], 7)
  with pytest.raises(ValueError, match="integer dtype"):
    metrics.parts_state(ids.astype(np.float32), ids, 7)
  with pytest.raises(ValueError, match="num_classes"):
    metrics.parts_state(ids, ids, 1)
  with pytest.raises(ValueError, match=r"\[\.\.\., H, W\]"):
    metrics.parts_state(ids[0, 0], ids[0, 0], 7)
  with pytest.raises(ValueError, match="keys"):
    metrics.finalize_parts({"confusion": np.eye(3)})
  with pytest.raises(ValueError, match="square"):
    metrics.finalize_parts({"confusion": np.zeros((2, 3)), "image_count": 1})
