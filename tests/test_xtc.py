"""MTPSL's cross-task consistency (mtjax/regularizers/xtc.py), the models' features and the
pipeline's second view."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo_xtc, nyud_xtc
from mtjax import regularizers, train
from mtjax.models import FEATURES, SegNetMTL, features
from mtjax.regularizers import mapping, xtc
from tests.test_main import read_scalars
from tests.test_train import tiny_config

TASKS = ("semseg", "depth", "normal")


def test_mtpsl_mapping_network_has_14819328_parameters():
  config = nyud_xtc.get_config()
  settings = xtc.settings_from_config(config, TASKS, 13, max_pairs=2, bottleneck=(32, 512))
  shapes = jax.eval_shape(lambda: settings.encoder().init_variables(jax.random.key(0), (288, 384)))
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)) == 14_819_328
  assert settings.stride == 32 and config.regularizer.weight == 2.0


def test_cosine_distance_by_hand():
  a = np.zeros((1, 1, 2, 3), np.float32)
  b = np.zeros((1, 1, 2, 3), np.float32)
  a[0, 0, 0], b[0, 0, 0] = [1, 0, 0], [1, 1, 0]  # cos 1/√2
  a[0, 0, 1], b[0, 0, 1] = [0, 2, 0], [0, 0, 0]  # a zero vector: cos 0
  np.testing.assert_allclose(xtc.cosine_distance(a, b), [1 - (1 / np.sqrt(2) + 0) / 2], rtol=1e-6)


def _settings(**kw):
  return xtc.XTCSettings(
      tasks=TASKS, num_classes=5, max_pairs=6, filters=(4, 8), convs_per_stage=(1, 1), **kw
  )


def _inputs(key, b=3, h=8, w=8):
  k = jax.random.split(key, 6)
  normal = jax.random.normal(k[0], (b, h, w, 3))
  batch = {
      "semseg": jax.random.randint(k[1], (b, h, w), -1, 5),
      "depth": jax.random.uniform(k[2], (b, h, w, 1)),
      "normal": normal / jnp.linalg.norm(normal, axis=-1, keepdims=True),
      # Example 0: semseg labelled (pairs (depth, semseg), (normal, semseg)); 1: everything
      # (6 ordered pairs); 2: nothing.
      "label_mask": jnp.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]], jnp.float32),
  }
  pn = jax.random.normal(k[3], (b, h, w, 3))
  predictions = {
      "semseg": jax.nn.log_softmax(jax.random.normal(k[4], (b, h, w, 5))),
      "depth": jax.random.uniform(k[5], (b, h, w, 1)),
      "normal": pn / jnp.linalg.norm(pn, axis=-1, keepdims=True),
  }
  feats = {"bottleneck": jax.random.normal(k[0], (b, h // 4, w // 4, 8))}
  return batch, predictions, feats


def test_xtc_loss_against_numpy_per_pair():
  s = _settings()
  batch, preds, feats = _inputs(jax.random.key(0))
  params = s.encoder().init_variables(jax.random.key(1), (8, 8))["params"]
  rng = jax.random.key(2)
  loss, logs = xtc.xtc_loss(params, s, preds, batch, rng, feats)
  # The same slots, mapped once, then the pair terms in float64 NumPy.
  pred_task, gt_task, valid = mapping.pair_slots(batch["label_mask"], 6)
  f_pred, f_gt = mapping.mapped_features(
      params, s.encoder(), TASKS, 5, preds, batch, pred_task, gt_task, rng
  )
  f_pred, f_gt = np.asarray(f_pred, np.float64), np.asarray(f_gt, np.float64)
  feat = np.asarray(feats["bottleneck"], np.float64)

  def dist(x, y):
    cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1) + 1e-300)
    return 1 - cos.mean()

  total, pairs = 0.0, 0
  for b in range(3):
    for k in range(6):
      if valid[b, k]:
        pairs += 1
        total += dist(f_gt[b, k], f_pred[b, k]) + 0.5 * (
            dist(f_gt[b, k], feat[b]) + dist(f_pred[b, k], feat[b])
        )
  assert pairs == 2 + 6 and float(logs["valid_pairs"]) == 8
  np.testing.assert_allclose(loss, total / 3, rtol=1e-5)  # Σ over pairs, mean over the batch.
  # The pairs: unlabelled prediction, labelled ground truth.
  assert set(zip(np.asarray(pred_task[0, :2]), np.asarray(gt_task[0, :2]))) == {(1, 0), (2, 0)}


def test_xtc_gradients_are_finite_and_reach_predictions_not_the_feature():
  s = _settings()
  batch, preds, feats = _inputs(jax.random.key(3))
  params = s.encoder().init_variables(jax.random.key(4), (8, 8))["params"]
  grads = jax.grad(
      lambda p, q, f: xtc.xtc_loss(p, s, q, batch, jax.random.key(5), f)[0], argnums=(0, 1, 2)
  )(params, preds, feats)
  for leaf in jax.tree.leaves(grads):
    assert np.isfinite(leaf).all()
  assert np.abs(grads[1]["semseg"]).sum() > 0  # Straight-through one-hot.
  assert np.abs(grads[1]["depth"]).sum() > 0
  np.testing.assert_array_equal(grads[2]["bottleneck"], 0.0)  # sg(F).
  film = grads[0]["stage_0_conv_0"]["gamma"]
  assert np.abs(film).sum(-1).astype(bool).sum() == 6  # Every directed pair's row was used.


def test_mismatched_mapping_and_bottleneck_are_named():
  config = demo_xtc.get_config()
  config.regularizer.mapping.filters = (8, 16)
  with pytest.raises(ValueError, match="needs 5 stages ending at 32 channels"):
    regularizers.create(config, np.eye(3), 13, (96, 128))


def test_models_expose_features_without_changing_predictions():
  model = SegNetMTL(num_classes=5, filters=(4, 8))
  x = jax.random.uniform(jax.random.key(0), (2, 8, 12, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  plain = model.apply(variables, x, train=False)
  out, mutated = model.apply(variables, x, train=False, mutable=[FEATURES])
  feats = features(mutated)
  assert {k: v.shape for k, v in feats.items()} == {
      "bottleneck": (2, 2, 3, 8),
      "decoder": (2, 8, 12, 4),
      "head_semseg": (2, 8, 12, 4),
      "head_depth": (2, 8, 12, 4),
      "head_normal": (2, 8, 12, 4),
  }
  for k in plain:
    np.testing.assert_array_equal(out[k], plain[k])
  # The depth head's 1x1 conv of its hidden feature is the depth prediction.
  k1 = variables["params"]["pred_depth_1"]
  depth = feats["head_depth"] @ k1["kernel"][0, 0] + k1["bias"]
  np.testing.assert_allclose(depth, plain["depth"], rtol=1e-5, atol=1e-6)


def test_two_views_differ_and_each_matches_its_own_labels(tmp_path):
  from mtjax.data import label_settings, pipeline, procedural_source

  source = procedural_source.ProceduralRoomsSource("train", data_dir=tmp_path, config_name="tiny")
  mask = label_settings.resolve_label_mask(
      "full", num_examples=source.num_examples, dataset_tasks=TASKS, tasks=TASKS, seed=0
  )
  ds = pipeline.train_dataset(
      source, label_mask=mask, per_process_batch_size=8, seed=0, scales=(1.0,), flip=True, views=2
  )
  batch = next(ds.as_numpy_iterator())
  one = pipeline.train_dataset(
      source, label_mask=mask, per_process_batch_size=8, seed=0, scales=(1.0,), flip=True
  )
  first = next(one.as_numpy_iterator())
  for k in first:
    np.testing.assert_array_equal(batch[k], first[k])  # View 1 is the one-view stream.
  differ = 0
  for b, index in enumerate(batch["index"]):
    stored = source.load(int(index))
    for prefix in ("", "view2/"):
      flipped = not np.array_equal(batch[prefix + "image"][b], stored["image"])
      for key in ("image", "semseg", "depth"):
        expected = stored[key][:, ::-1] if flipped else stored[key]
        np.testing.assert_array_equal(batch[prefix + key][b], expected, err_msg=prefix + key)
      # A flip negates the normals' x component; everything else is as stored.
      sign = np.array([-1, 1, 1], np.float32) if flipped else np.ones(3, np.float32)
      normal = stored["normal"][:, ::-1] if flipped else stored["normal"]
      np.testing.assert_array_equal(batch[prefix + "normal"][b], normal * sign)
    differ += not np.array_equal(batch["image"][b], batch["view2/image"][b])
  assert differ > 0  # Independent flips: some examples' views differ.


@pytest.mark.slow
def test_demo_xtc_trains_with_finite_decreasing_loss_and_resumes(tmp_path):
  def config(steps):
    c = tiny_config(
        tmp_path / "tfds",
        base=demo_xtc.get_config(),
        batch_size=4,
        num_train_steps=steps,
        eval_every_steps=30,
        checkpoint_every_steps=15,
        lr_decay_epochs=(),
    )
    c.dataset.builder_config = "tiny"  # 8 train / 4 validation rooms at 32x64.
    c.label_setting = "onelabel"
    c.regularizer.mapping.filters = tuple(c.model.filters)
    return c

  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config(30), workdir)
  scalars = read_scalars(workdir)
  loss = np.array([scalars["train/loss"][s] for s in range(1, 31)])
  reg = np.array([scalars["train/loss/xtc"][s] for s in range(1, 31)])
  assert np.all(np.isfinite(loss)) and np.all(np.isfinite(reg))
  assert min(scalars["train/xtc/valid_pairs"].values()) > 0
  assert loss[-10:].mean() < 0.8 * loss[:10].mean(), loss
  assert jax.tree.leaves(state.reg_params)

  resumed_dir = str(tmp_path / "resumed")
  train.train_and_evaluate(config(15), resumed_dir)
  resumed = train.train_and_evaluate(config(30), resumed_dir)
  for a, b in zip(jax.tree.leaves(state.reg_params), jax.tree.leaves(resumed.reg_params)):
    np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-6)


def test_xtc_mapping_must_meet_the_hrnet_bottleneck():
  config = demo_xtc.get_config()
  config.model.name = "hrnet_w18"
  with pytest.raises(ValueError, match="needs 5 stages ending at 144 channels"):
    regularizers.create(config, np.eye(3), 13, (96, 128))
  config.regularizer.mapping.filters = (8, 16, 32, 64, 144)
  assert regularizers.create(config, np.eye(3), 13, (96, 128)).name == "xtc"
