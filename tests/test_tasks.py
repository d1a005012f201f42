"""Task records (mtjax/tasks): a toy task registered here runs through a model, the objective,
evaluation, the panel and augmentation without touching any other module; the new tasks' losses
against float64 NumPy; every metric has a Δm direction; flip / resize / scale rules per task."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import default
from mtjax import evaluation, metrics, objective, regularizers, sharding, weighting
from mtjax import tasks as tasks_lib
from mtjax.data import augment
from mtjax.models import segnet
from mtjax.tasks import base, binary

# ---- A toy task, defined only here ------------------------------------------------------------

_TOY_IGNORE = -100.0


def _toy_state(pred, gt):
  valid = gt[..., 0] != _TOY_IGNORE
  err = jnp.where(valid[..., None], jnp.abs(pred - gt), 0.0)
  return {"toy_abs": jnp.sum(err), "toy_count": jnp.sum(valid, dtype=jnp.int32)}


def _toy_finalize(state):
  n = float(state["toy_count"])
  return {"toy_l1": float(state["toy_abs"]) / n} if n else {}


@functools.cache
def _toy(*, num_classes=None, scale=1.0):
  """A 2-channel flow-like regression: x flips sign under a horizontal flip, values grow with s."""
  del num_classes
  valid = lambda gt: gt[..., 0] != _TOY_IGNORE
  return base.Task(
      name="toy",
      channels=2,
      activation=lambda y: scale * y,
      loss=lambda pred, gt: base.masked_mean(jnp.abs(pred - gt).sum(-1), valid(gt)),
      gt_dtype="float32",
      gt_shape=(2,),
      ignore=_TOY_IGNORE,
      is_valid=valid,
      to_gt_format=lambda pred: pred,
      metric_state=_toy_state,
      finalize=_toy_finalize,
      directions={"toy_l1": False},
      encoding_channels=2,
      encode_gt=lambda gt: jnp.where(valid(gt)[..., None], gt, 0.0),
      encode_prediction=lambda pred, rng, gumbel: pred,
      relation=lambda a, c, t: jnp.abs(a[:, :, None, 0] - c[:, None, :, 0]) <= t,
      relation_threshold=0.5,
      to_rgb=lambda x, gt: np.zeros(x.shape[:-1] + (3,), np.uint8) + 7,
      resize="nearest",
      flip_sign=(-1.0, 1.0),
      scale_power=1.0,
  )


@pytest.fixture
def toy():
  tasks_lib.register("toy", _toy)
  yield
  tasks_lib.unregister("toy")


def test_toy_task_runs_through_model_objective_evaluation_and_panel(toy):
  config = default.get_config()
  config.tasks = ("semseg", "toy")
  config.dataset.num_classes = 4
  config.task_options.toy = ml_collections.ConfigDict({"scale": 2.0})
  semseg, toy_task = tasks_lib.from_config(config)
  assert toy_task is _toy(num_classes=4, scale=2.0) and semseg.channels == 4

  model = segnet.SegNetMTL(num_classes=4, tasks=(semseg, toy_task), filters=(4, 4))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((2, 8, 8, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), images, train=False)
  out = model.apply(variables, images, train=False)
  assert out["toy"].shape == (2, 8, 8, 2) and out["semseg"].shape == (2, 8, 8, 4)

  gt = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
  gt[0, :4] = _TOY_IGNORE
  batch = {
      "image": images,
      "semseg": jnp.asarray(rng.integers(-1, 4, (2, 8, 8)), jnp.int32),
      "toy": jnp.asarray(gt),
      "label_mask": jnp.asarray([[1.0, 0.0], [0.0, 1.0]]),
      "valid": jnp.asarray([1.0, 1.0]),
  }
  loss, task_losses = tasks_lib.partial_label_loss(out, batch, (semseg, toy_task))
  valid = gt[1, ..., 0] != _TOY_IGNORE
  want_toy = np.abs(np.asarray(out["toy"])[1] - gt[1]).sum(-1)[valid].mean() / 2  # Example 1 only.
  np.testing.assert_allclose(task_losses["toy"], want_toy, rtol=1e-5)
  np.testing.assert_allclose(loss, task_losses["semseg"] + task_losses["toy"], rtol=1e-6)

  # The training objective, with pixel contrast reading the toy's relation and the model's
  # features, and gradients that reach the toy head.
  config.regularizer.name = "pixel_contrast"
  config.regularizer.pixel_contrast.anchors = config.regularizer.pixel_contrast.candidates = 8
  config.regularizer.pixel_contrast.thresholds.toy = 0.3
  config.model.filters = (4, 4)
  reg = regularizers.create(config, np.eye(2), 4, (8, 8))
  assert reg.name == "pixel_contrast"
  params = {
      "model": variables["params"],
      "regularizer": reg.init(jax.random.key(1), (8, 8)),
      "weighting": {},
  }
  objective_fn = functools.partial(
      objective.objective,
      model=model,
      tasks=(semseg, toy_task),
      regularizer=reg,
      rng=jax.random.key(2),
      task_weighting=weighting.create(config, 2, 1),
      task_weights=jnp.ones(2),
  )
  grads, (logs, _, _, _) = jax.grad(objective_fn, has_aux=True)(
      params, variables["batch_stats"], batch
  )
  out_train, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
  _, train_losses = tasks_lib.partial_label_loss(out_train, batch, (semseg, toy_task))
  np.testing.assert_allclose(logs["loss/toy"], train_losses["toy"], rtol=1e-5)
  assert float(logs["pixel_contrast/valid_anchors"]) > 0
  assert float(jnp.abs(grads["model"]["pred_toy_1"]["kernel"]).sum()) > 0

  mesh = sharding.create_mesh()
  state = type("S", (), {"params": variables["params"], "batch_stats": variables["batch_stats"]})
  eval_fn = lambda s, b: evaluation.eval_step(s, b, model=model, tasks=(semseg, toy_task))
  np_batch = {k: np.asarray(v) for k, v in batch.items()}
  results = evaluation.evaluate(eval_fn, state, iter([np_batch]), mesh, (semseg, toy_task))
  all_valid = gt[..., 0] != _TOY_IGNORE
  want = np.abs(np.asarray(out["toy"]) - gt)[all_valid].sum() / all_valid.sum()
  np.testing.assert_allclose(results["toy"]["toy_l1"], want, rtol=1e-5)
  assert evaluation.directions((semseg, toy_task))["toy_l1"] is False

  predict = lambda s, x: model.apply({"params": s.params, "batch_stats": s.batch_stats}, x, train=False)
  panel = evaluation.image_panel(predict, state, np_batch, mesh, (semseg, toy_task), 2)
  assert panel.shape == (2, 8, 8 * 5, 3)
  assert np.all(panel[:, :, 8 * 3 :] == 7)  # The toy's own colours, gt and prediction.

  flips = [augment.random_flip({"toy": tf.ones((1, 1, 2))}, [0, s])["toy"] for s in range(8)]
  assert {tuple(np.asarray(f)[0, 0]) for f in flips} == {(1.0, 1.0), (-1.0, 1.0)}


def test_unknown_task_and_bad_options_are_named(toy):
  with pytest.raises(ValueError, match=r"unknown: \['nope'\]"):
    tasks_lib.get_tasks(("semseg", "nope"))
  with pytest.raises(ValueError, match="task 'toy': bad options"):
    tasks_lib.get_task("toy", sclae=2.0)
  with pytest.raises(ValueError, match="already registered"):
    tasks_lib.register("toy", _toy)
  with pytest.raises(ValueError, match="no head size"):
    segnet.SegNetMTL(tasks=("semseg",), num_classes=None, filters=(4,)).init(
        jax.random.key(0), jnp.zeros((1, 2, 2, 3)), train=False
    )


# ---- Losses of the new tasks ------------------------------------------------------------------


def _bce_reference(logits, gt, pos_weight):
  """Per-example class-balanced BCE, pixel by pixel in float64."""
  out = []
  for z, y in zip(logits.astype(np.float64), gt.astype(np.float64)):
    z, y = z.ravel(), y.ravel()
    keep = (y == 0) | (y == 1)
    z, y = z[keep], y[keep]
    if not keep.any():
      out.append(0.0)
      continue
    p = 1 / (1 + np.exp(-z))
    if pos_weight is None:
      wp = wn = 1.0
    elif pos_weight == "auto":
      wp = np.mean(y == 0)
      wn = 1 - wp
    else:
      wp, wn = pos_weight, 1 - pos_weight
    out.append(np.mean(-(wp * y * np.log(p) + wn * (1 - y) * np.log(1 - p))))
  return np.array(out)


@pytest.mark.parametrize("pos_weight", [0.95, 0.8, "auto", None])
def test_balanced_bce_matches_numpy(pos_weight):
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 3, (3, 6, 7, 1)).astype(np.float32)
  gt = (rng.random((3, 6, 7, 1)) < 0.2).astype(np.float32)
  gt[0, :2] = 255.0
  gt[2] = 255.0  # No valid pixel: 0.
  got = binary.balanced_bce(jnp.asarray(logits), jnp.asarray(gt), pos_weight)
  np.testing.assert_allclose(got, _bce_reference(logits, gt, pos_weight), rtol=1e-5, atol=1e-7)
  edge = tasks_lib.get_task("edge", pos_weight=pos_weight)
  np.testing.assert_allclose(edge.loss(jnp.asarray(logits), jnp.asarray(gt)), got, rtol=1e-6)


def test_human_parts_loss_is_cross_entropy_with_ignore():
  parts = tasks_lib.get_task("human_parts")
  assert parts.channels == 7
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 3, 4, 7))
  labels = rng.integers(-1, 7, (2, 3, 4))
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = [
      np.mean([-log_probs[b, y, x, labels[b, y, x]] for y, x in zip(*np.nonzero(labels[b] >= 0))])
      for b in range(2)
  ]
  pred = parts.activation(jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(parts.loss(pred, jnp.asarray(labels)), want, rtol=1e-5)


# ---- Δm directions: every metric a record finalizes has one -----------------------------------


def _example_gt(task, rng, shape=(2, 24, 32)):
  if task.gt_dtype == "int32":
    return rng.integers(0, task.channels, shape).astype(np.int32)
  if task.name == "normal":
    n = rng.normal(size=shape + (3,))
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)
  if task.name in ("edge", "saliency"):
    gt = np.zeros(shape + (1,), np.float32)
    gt[:, 8:16, 10:20] = 1.0 if task.name == "saliency" else 0.0
    gt[:, 12, 4:28] = 1.0
    return gt
  return rng.uniform(0.5, 5.0, shape + task.gt_shape).astype(np.float32)


@pytest.mark.parametrize("name", ["semseg", "depth", "normal", "edge", "saliency", "human_parts"])
def test_every_metric_has_a_direction(name):
  task = tasks_lib.get_task(name, num_classes=5)
  rng = np.random.default_rng(3)
  gt = _example_gt(task, rng)
  if task.gt_dtype == "int32":
    gt[0, 0, :3] = [0, 1, 2]  # Parts: more than one value in each image.
    gt[1, 0, :3] = [0, 1, 2]
  pred = rng.normal(size=gt.shape[:3] + (task.channels,)).astype(np.float32)
  state = task.metric_state_of_output(task.activation(jnp.asarray(pred)), jnp.asarray(gt))
  state = task.host_state(jax.device_get(state)) if task.host_state else state
  values = task.finalize(jax.device_get(state))
  assert values, f"{name}: no metric"
  assert set(values) <= set(task.directions), (name, set(values) - set(task.directions))
  for metric, higher in task.directions.items():
    assert metrics.HIGHER_IS_BETTER.get(metric, higher) == higher, metric  # One sign per name.


# ---- Augmentation rules per task --------------------------------------------------------------


def test_flip_and_scale_rules_per_task():
  h, w = 12, 16
  rng = np.random.default_rng(4)
  normal = rng.normal(size=(h, w, 3))
  example = {
      "image": tf.constant(rng.random((h, w, 3)), tf.float32),
      "semseg": tf.constant(rng.integers(-1, 5, (h, w)), tf.int32),
      "human_parts": tf.constant(rng.integers(-1, 7, (h, w)), tf.int32),
      "depth": tf.constant(rng.uniform(1, 2, (h, w, 1)), tf.float32),
      "normal": tf.constant(normal / np.linalg.norm(normal, axis=-1, keepdims=True), tf.float32),
      "edge": tf.constant(rng.choice([0.0, 1.0, 255.0], (h, w, 1)), tf.float32),
      "saliency": tf.constant(rng.choice([0.0, 1.0, 255.0], (h, w, 1)), tf.float32),
  }
  for seed in range(6):
    out = augment.random_flip(example, tf.constant([0, seed]))
    flipped = not np.array_equal(out["image"], example["image"])
    for key, value in example.items():
      want = np.asarray(value)[:, ::-1] if flipped else np.asarray(value)
      if key == "normal" and flipped:
        want = want * [-1.0, 1.0, 1.0]
      np.testing.assert_allclose(out[key], want, err_msg=key)

  disparity = tasks_lib.get_task("depth", units="disparity")
  for seed in range(6):
    out = augment.random_scale_crop(example, tf.constant([1, seed]), scales=(2.0,))
    out_disp = augment.random_scale_crop(
        example, tf.constant([1, seed]), scales=(2.0,), tasks=(disparity,)
    )
    # Nearest: every value of an id or binary map is one of the stored ones (no blending).
    for key in ("semseg", "human_parts", "edge", "saliency"):
      assert set(np.unique(out[key])) <= set(np.unique(example[key])), key
    # A zoom by 2 halves metric depth and doubles disparity; both from the same stored pixels.
    np.testing.assert_allclose(np.asarray(out_disp["depth"]), 4 * np.asarray(out["depth"]), rtol=1e-6)
    assert set(np.round(np.asarray(out["depth"]) * 2, 5).ravel()) <= set(
        np.round(np.asarray(example["depth"]), 5).ravel()
    )
    norms = np.linalg.norm(out["normal"], axis=-1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)


def test_normal_alone_with_a_dataset_valid_mask():
  """PASCAL's distilled normals are kept on some classes only: the reader zeroes the rest, and the
  normal task (without depth) then trains and scores on exactly the kept pixels."""
  normal = tasks_lib.get_task("normal")
  rng = np.random.default_rng(5)
  gt = rng.normal(size=(2, 6, 7, 3))
  gt /= np.linalg.norm(gt, axis=-1, keepdims=True)
  keep = rng.random((2, 6, 7)) < 0.4  # The dataset's valid mask (e.g. 170 context classes).
  masked = np.where(keep[..., None], gt, 0.0).astype(np.float32)
  pred = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
  unit = pred / np.linalg.norm(pred, axis=-1, keepdims=True)
  cos = (unit * gt).sum(-1)
  want_loss = [1 - cos[b][keep[b]].mean() for b in range(2)]
  np.testing.assert_allclose(normal.loss(jnp.asarray(pred), jnp.asarray(masked)), want_loss, rtol=1e-5)
  values = normal.finalize(normal.metric_state(jnp.asarray(pred), jnp.asarray(masked)))
  angles = np.degrees(np.arccos(np.clip(cos[keep], -1, 1)))
  np.testing.assert_allclose(values["mean"], angles.mean(), rtol=1e-4)
  np.testing.assert_allclose(values["within_30"], 100 * np.mean(angles < 30), rtol=1e-6)
