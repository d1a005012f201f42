"""MTPSL losses and the partial-label reduction against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax import tasks as tasks_lib


def _random_batch(rng, b=3, h=5, w=6, c=4):
  logits = rng.normal(size=(b, h, w, c))
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  labels = rng.integers(-1, c, size=(b, h, w))
  labels[1] = -1  # An example with no valid pixel.
  depth_pred = rng.uniform(0.5, 5, size=(b, h, w, 1))
  depth_gt = np.where(rng.random((b, h, w, 1)) < 0.3, 0.0, rng.uniform(0.5, 5, size=(b, h, w, 1)))
  normal_pred = rng.normal(size=(b, h, w, 3))
  normal_gt = rng.normal(size=(b, h, w, 3))
  normal_gt /= np.linalg.norm(normal_gt, axis=-1, keepdims=True)
  normal_gt[rng.random((b, h, w)) < 0.3] = 0.0
  normal_gt[2] = 0.0
  return log_probs, labels, depth_pred, depth_gt, normal_pred, normal_gt


def _reference_losses(log_probs, labels, depth_pred, depth_gt, normal_pred, normal_gt):
  """Per-example losses [B, 3] computed pixel by pixel, float64."""
  out = np.zeros((labels.shape[0], 3))
  for i in range(labels.shape[0]):
    nll = [-log_probs[i][y, x, labels[i, y, x]] for y, x in zip(*np.nonzero(labels[i] >= 0))]
    out[i, 0] = np.mean(nll) if nll else 0.0
    valid = depth_gt[i, ..., 0] != 0
    out[i, 1] = (
        np.abs(depth_pred[i, ..., 0] - depth_gt[i, ..., 0])[valid].mean() if valid.any() else 0
    )
    valid = np.abs(normal_gt[i]).sum(-1) > 0
    unit = normal_pred[i] / np.linalg.norm(normal_pred[i], axis=-1, keepdims=True)
    out[i, 2] = 1 - (unit * normal_gt[i]).sum(-1)[valid].mean() if valid.any() else 0.0
  return out


def test_task_losses_match_reference():
  arrays = _random_batch(np.random.default_rng(0))
  log_probs, labels, dp, dg, n_p, n_g = arrays
  got = np.stack(
      [
          tasks_lib.semseg_loss(jnp.asarray(log_probs, jnp.float32), jnp.asarray(labels)),
          tasks_lib.depth_loss(jnp.asarray(dp, jnp.float32), jnp.asarray(dg, jnp.float32)),
          tasks_lib.normal_loss(jnp.asarray(n_p, jnp.float32), jnp.asarray(n_g, jnp.float32)),
      ],
      axis=1,
  )
  np.testing.assert_allclose(got, _reference_losses(*arrays), rtol=1e-5, atol=1e-6)


def test_partial_label_loss_counts_only_labelled_tasks_over_batch():
  arrays = _random_batch(np.random.default_rng(1))
  log_probs, labels, dp, dg, n_p, n_g = arrays
  mask = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1]], np.float32)
  valid = np.array([1, 1, 0], np.float32)  # The third example is padding: it never counts.
  predictions = {"semseg": log_probs, "depth": dp, "normal": n_p}
  batch = {"semseg": labels, "depth": dg, "normal": n_g, "label_mask": mask, "valid": valid}
  f32 = lambda t: jax.tree.map(
      lambda x: jnp.asarray(x, jnp.float32 if x.dtype.kind == "f" else None), t
  )
  loss, task_losses = jax.jit(tasks_lib.partial_label_loss, static_argnums=2)(
      f32(predictions), f32(batch), tasks_lib.get_tasks(("semseg", "depth", "normal"))
  )

  per_example = _reference_losses(*arrays) * mask * valid[:, None]
  expected_tasks = per_example.sum(0) / 3  # MTPSL: Σ_examples Σ_labelled tasks / B.
  np.testing.assert_allclose(
      [task_losses[k] for k in ("semseg", "depth", "normal")], expected_tasks, rtol=1e-5
  )
  np.testing.assert_allclose(loss, expected_tasks.sum(), rtol=1e-5)


def test_unlabelled_ground_truth_gets_no_gradient():
  arrays = _random_batch(np.random.default_rng(2))
  log_probs, labels, dp, dg, n_p, n_g = (jnp.asarray(a) for a in arrays)
  batch = {
      "semseg": labels,
      "depth": dg,
      "normal": n_g,
      "label_mask": jnp.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]], jnp.float32),
  }
  task_list = tasks_lib.get_tasks(("semseg", "depth", "normal"))
  grad = jax.grad(
      lambda lp: tasks_lib.partial_label_loss(
          {"semseg": lp, "depth": dp, "normal": n_p}, batch, task_list
      )[0]
  )(log_probs)
  assert np.all(grad[0] == 0)  # Example 0's semseg is unlabelled.
  assert np.any(grad[2] != 0)


def test_get_tasks_rejects_unknown_and_repeated_names():
  with pytest.raises(ValueError, match="edges"):
    tasks_lib.get_tasks(("semseg", "edges"))
  with pytest.raises(ValueError, match="distinct"):
    tasks_lib.get_tasks(("depth", "depth"))


def test_normal_mse_is_mt_cps_released_loss_over_valid_pixels():
  rng = np.random.default_rng(3)
  *_, pred, gt = _random_batch(rng)
  record = tasks_lib.get_task("normal", head="raw", loss="mse")
  got = np.asarray(record.loss(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32)))
  for i in range(pred.shape[0]):
    valid = np.abs(gt[i]).sum(-1) > 0
    # F.mse_loss over the selected elements: Σ (pred − gt)² / their count.
    expected = np.mean((pred[i][valid] - gt[i][valid]) ** 2) if valid.any() else 0.0
    np.testing.assert_allclose(got[i], expected, rtol=1e-5, atol=1e-7)
  assert got[2] == 0.0  # No valid pixel.
  with pytest.raises(ValueError, match=r"normal.loss='l2': expected one of \('cosine', 'mse'\)"):
    tasks_lib.get_task("normal", loss="l2")
