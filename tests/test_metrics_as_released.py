"""Metrics as RDC's released code computes them, beside the correct ones: raw-prediction normals,
the mIoU that counts absent classes as 0, and Δm against the released table."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mtjax import metrics, results, tasks, train
from mtjax.evaluation import as_released_references
from tests.test_main import read_scalars
from tests.test_train import tiny_config


def _normals(rng, n):
  v = rng.normal(size=(n, 3))
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_raw_normals_score_long_predictions_as_zero_degrees():
  rng = np.random.default_rng(0)
  gt = _normals(rng, 400)
  lengths = rng.uniform(1.2, 3.0, size=(400, 1))
  pred = (_normals(rng, 400) * 0.3 + gt) * lengths  # Angles up to ~35°, lengths 1.2..3.
  gt[:20] = 0.0  # Invalid pixels.
  # The released NormalsMeter in float64: acos(clamp(Σ p·g, -1, 1)), no normalisation.
  valid = np.any(gt != 0, -1)
  raw = np.degrees(np.arccos(np.clip(np.sum(pred * gt, -1), -1, 1)))[valid]
  unit = pred / np.linalg.norm(pred, axis=-1, keepdims=True)
  true = np.degrees(np.arccos(np.clip(np.sum(unit * gt, -1), -1, 1)))[valid]
  shape = (1, 20, 20, 3)
  got_raw = metrics.finalize(
      metrics.normals_state(pred.reshape(shape), gt.reshape(shape), normalize=False)
  )
  got = metrics.finalize(metrics.normals_state(pred.reshape(shape), gt.reshape(shape)))
  np.testing.assert_allclose(got_raw["mean"], raw.mean(), rtol=1e-4)
  np.testing.assert_allclose(got_raw["within_11_25"], np.mean(raw < 11.25) * 100, rtol=1e-5)
  np.testing.assert_allclose(got["mean"], true.mean(), rtol=1e-4)
  # Long predictions within their angle score 0°: the released metric flatters them.
  assert np.sum(raw == 0) > 50 and got_raw["mean"] < got["mean"] - 5
  # On unit predictions the two agree.
  np.testing.assert_allclose(
      metrics.finalize(
          metrics.normals_state(unit.reshape(shape), gt.reshape(shape), normalize=False)
      )["mean"],
      got["mean"],
      rtol=1e-4,
  )


def test_released_miou_counts_classes_absent_from_both_as_zero():
  conf = np.zeros((4, 4))
  conf[0, 0], conf[0, 1], conf[1, 1], conf[2, 2] = 6, 2, 4, 5  # Class 3 absent from both.
  ious = np.array([6 / 8, 4 / 6, 5 / 5])
  assert metrics.finalize({"confusion": conf})["miou"] == pytest.approx(ious.mean() * 100)
  released = metrics.finalize_semseg_as_released({"confusion": conf})
  assert released["miou"] == pytest.approx(ious.sum() / 4 * 100, rel=1e-6)
  assert metrics.finalize_semseg_as_released({"confusion": np.zeros((4, 4))}) == {}


def test_only_semseg_and_normal_are_scored_as_released():
  # A task record holds both halves of its released metric, or neither.
  with_released = [
      n
      for n in ("semseg", "depth", "normal", "edge", "saliency")
      if tasks.get_task(n, num_classes=13).released_finalize is not None
  ]
  assert with_released == ["semseg", "normal"]
  semseg = tasks.get_task("semseg", num_classes=4)
  with pytest.raises(ValueError, match="go together"):
    dataclasses.replace(semseg, released_finalize=None)


def test_delta_m_as_released_swaps_in_the_released_metrics():
  refs = metrics.RDC_RELEASED_STL_REFERENCES["onelabel"]
  evaluation = {
      "semseg": {"miou": 30.0},
      "depth": {"abs_err": 0.7},
      "normal": {"mean": 32.0},
      "semseg_as_released": {"miou": 28.0},
      "normal_as_released": {"mean": 5.0},
  }
  expected = (
      np.mean(
          [(28 - 26.1113) / 26.1113, -(0.7 - 0.771502) / 0.771502, -(5.0 - 30.073763) / 30.073763]
      )
      * 100
  )
  assert metrics.delta_m_as_released(evaluation, refs) == pytest.approx(expected)
  assert metrics.delta_m(evaluation, refs) != pytest.approx(expected)


def test_raw_head_option_and_released_references():
  unit_head = tasks.get_tasks(("normal",), num_classes=13)[0]
  raw_head = tasks.get_tasks(("normal",), num_classes=13, options={"normal": {"head": "raw"}})[0]
  y = jnp.array([[[[0.0, 3.0, 4.0]]]])
  np.testing.assert_allclose(raw_head.activation(y), y)
  np.testing.assert_allclose(unit_head.activation(y), y / 5.0, rtol=1e-6)
  np.testing.assert_allclose(raw_head.to_gt_format(y), y / 5.0, rtol=1e-6)
  with pytest.raises(ValueError, match="head"):
    tasks.get_tasks(("normal",), num_classes=13, options={"normal": {"head": "tanh"}})
  config = default.get_config()
  config.label_setting = "onelabel"
  assert as_released_references(config) is None  # Off unless asked for.
  config.metrics_as_released = True
  assert as_released_references(config)["normal"] == {"mean": 30.073763}


def test_training_reports_both_metrics_and_gradient_norms(data_dir, tmp_path):
  config = tiny_config(data_dir, metrics_as_released=True, num_train_steps=2, log_grad_norms=True)
  config.task_options.normal.head = "raw"
  train.train_and_evaluate(config, str(tmp_path))
  scalars = read_scalars(str(tmp_path))
  for term in ("semseg", "depth", "normal", "total"):
    assert set(scalars[f"train/grad_norm/{term}"]) == {1, 2}
  assert all(v > 0 for v in scalars["train/grad_norm/total"].values())
  assert set(scalars["eval/delta_m_as_released"]) == {2}  # randomlabels: the released table's.
  record = results.read(str(tmp_path))
  # results.json keeps each evaluation interval's mean gradient norms (eval every 2 steps).
  (trained,) = [e["train"] for e in record["evaluations"]]
  assert trained["log_steps"] == 2
  for term in ("semseg", "depth", "normal", "supervised", "total"):
    logged = scalars[f"train/grad_norm/{term}"]
    assert trained[f"grad_norm/{term}"] == pytest.approx((logged[1] + logged[2]) / 2, rel=1e-5)
  final = results.final_evaluation(record)["metrics"]
  assert set(final) >= {"semseg", "normal", "semseg_as_released", "normal_as_released"}
  assert final["normal"]["mean"] != final["normal_as_released"]["mean"]
  assert set(final["normal_as_released"]) == set(final["normal"])
