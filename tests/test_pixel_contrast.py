"""The pixel-contrast regularizer (mtjax/regularizers/pixel_contrast.py, seed 000 reconstructed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo_pixel_contrast
from mtjax import train
from mtjax.regularizers import pixel_contrast as pc
from tests.test_main import read_scalars
from tests.test_train import tiny_config

TASKS = ("semseg", "depth", "normal")


def _batch(h=8, w=8, label_mask=((1, 0, 0),)):
  b = len(label_mask)
  semseg = np.zeros((b, h, w), np.int32)
  semseg[:, :, w // 2 :] = 3
  semseg[:, 0, 0] = -1
  normal = np.zeros((b, h, w, 3), np.float32)
  normal[..., 2] = 1
  return {
      "semseg": jnp.asarray(semseg),
      "depth": jnp.ones((b, h, w, 1)),
      "normal": jnp.asarray(normal),
      "label_mask": jnp.asarray(label_mask, jnp.float32),
  }


def _settings(**kw):
  return pc.PixelContrastSettings(tasks=TASKS, anchors=16, candidates=16, projection_dim=8, **kw)


def test_relations_by_hand():
  s = _settings(thresholds=(("depth", 0.5), ("normal", 30.0)))
  semseg, depth, normal = s.records
  assert s.threshold(depth) == 0.5 and _settings().threshold(depth) == 0.2  # Override, default.
  close = depth.relation(jnp.array([[[1.0]]]), jnp.array([[[1.4], [1.6], [0.0]]]), 0.5)
  np.testing.assert_array_equal(close, [[[True, False, False]]])
  c40 = [np.sin(np.radians(40)), 0, np.cos(np.radians(40))]
  c20 = [np.sin(np.radians(20)), 0, np.cos(np.radians(20))]
  close = normal.relation(jnp.array([[[0.0, 0, 1]]]), jnp.array([[c20, c40]]), 30.0)
  np.testing.assert_array_equal(close, [[[True, False]]])
  close = semseg.relation(jnp.array([[2, 5]]), jnp.array([[5, 2, 2]]), None)
  np.testing.assert_array_equal(close, [[[False, True, True], [True, False, False]]])
  with pytest.raises(ValueError, match="thresholds.edge"):
    _settings(thresholds=(("edge", 0.5),))


def test_triplets_follow_the_labelled_source():
  """Only semseg is labelled: the depth and normal targets must take semseg as their source (the
  semseg target has none). With features that are the one-hot of the semseg class, a positive of
  the same class projects exactly onto its anchor, so every triplet term is max(0, 0 − d_an + m):
  0 for a tiny margin. A wrong source or a wrong positive would leave d_ap > 0."""
  s = _settings(margin=1e-4)
  batch = _batch()
  onehot = jax.nn.one_hot(batch["semseg"], 4)
  feats = {f"head_{t}": onehot for t in TASKS}
  params = pc.init_params(s, jax.random.key(0), 4)
  loss, logs = pc.pixel_contrast_loss(params, s, batch, feats, jax.random.key(1))
  assert float(logs["valid_anchors"]) == 2 * 16  # depth and normal targets, 16 anchors each.
  assert float(loss) == 0.0
  # Features that ignore the class: the same sampling now pays the margin on every triplet.
  feats = {k: jnp.zeros_like(v) for k, v in feats.items()}
  loss, _ = pc.pixel_contrast_loss(params, s, batch, feats, jax.random.key(1))
  np.testing.assert_allclose(loss, 1e-4, rtol=1e-3)


def test_unlabelled_examples_and_padding_add_nothing():
  s = _settings()
  batch = _batch(label_mask=((0, 0, 0), (1, 1, 0)))
  batch["valid"] = jnp.array([1.0, 0.0])
  feats = {f"head_{t}": jax.random.normal(jax.random.key(2), (2, 8, 8, 4)) for t in TASKS}
  params = pc.init_params(s, jax.random.key(0), 4)
  loss, logs = pc.pixel_contrast_loss(params, s, batch, feats, jax.random.key(1))
  assert float(logs["valid_anchors"]) == 0 and float(loss) == 0.0


def test_gradients_are_finite_and_reach_the_features():
  s = _settings()
  batch = _batch(label_mask=((1, 1, 1), (0, 1, 0)))
  batch["depth"] = jax.random.uniform(jax.random.key(3), (2, 8, 8, 1)) * 2
  normal = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
  batch["normal"] = normal / jnp.linalg.norm(normal, axis=-1, keepdims=True)
  feats = {
      f"head_{t}": jax.random.normal(jax.random.key(k), (2, 8, 8, 4)) for k, t in enumerate(TASKS)
  }
  params = pc.init_params(s, jax.random.key(0), 4)
  grads = jax.grad(
      lambda p, f: pc.pixel_contrast_loss(p, s, batch, f, jax.random.key(1))[0], argnums=(0, 1)
  )(params, feats)
  for leaf in jax.tree.leaves(grads):
    assert np.isfinite(leaf).all()
  assert all(np.abs(grads[1][f"head_{t}"]).sum() > 0 for t in TASKS)


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match="margin must be > 0"):
    _settings(margin=0.0)
  with pytest.raises(ValueError, match="unknown task"):
    pc.PixelContrastSettings(tasks=("semseg", "edges"))


@pytest.mark.slow
def test_demo_pixel_contrast_trains_with_finite_decreasing_loss(tmp_path):
  config = tiny_config(
      tmp_path / "tfds",
      base=demo_pixel_contrast.get_config(),
      batch_size=4,
      num_train_steps=30,
      eval_every_steps=30,
      checkpoint_every_steps=30,
      lr_decay_epochs=(),
  )
  config.dataset.builder_config = "tiny"
  config.label_setting = "onelabel"
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config, workdir)
  scalars = read_scalars(workdir)
  loss = np.array([scalars["train/loss"][s] for s in range(1, 31)])
  reg = np.array([scalars["train/loss/pixel_contrast"][s] for s in range(1, 31)])
  assert np.all(np.isfinite(loss)) and np.all(np.isfinite(reg))
  assert min(scalars["train/pixel_contrast/valid_anchors"].values()) > 0
  assert loss[-10:].mean() < 0.8 * loss[:10].mean(), loss
  assert jax.tree.leaves(state.reg_params)


def test_a_coarser_feature_map_is_read_at_the_cell_of_each_pixel():
  s = _settings()
  batch = _batch(label_mask=((1, 1, 0), (0, 1, 1)))
  batch["depth"] = jax.random.uniform(jax.random.key(3), (2, 8, 8, 1)) * 2
  coarse = {
      f"head_{t}": jax.random.normal(jax.random.key(k), (2, 4, 4, 4)) for k, t in enumerate(TASKS)
  }
  fine = {k: jnp.repeat(jnp.repeat(v, 2, axis=1), 2, axis=2) for k, v in coarse.items()}
  params = pc.init_params(s, jax.random.key(0), 4)
  a = pc.pixel_contrast_loss(params, s, batch, coarse, jax.random.key(1))
  b = pc.pixel_contrast_loss(params, s, batch, fine, jax.random.key(1))
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
  assert float(a[1]["valid_anchors"]) == float(b[1]["valid_anchors"]) > 0
