"""Fitting variable-size examples to a canvas, the augmentations that use the box, and resizing
predictions back into it: against OpenCV and hand-computed placements."""

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from configs import default
from mtjax import evaluation
from mtjax import tasks as tasks_lib
from mtjax.data import augment, geometry, sources


def _example(h, w, seed=0):
  rng = np.random.default_rng(seed)
  normal = rng.normal(size=(h, w, 3)).astype(np.float32)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  normal[0, 0] = 0.0
  return {
      "image": rng.random((h, w, 3), dtype=np.float32),
      "semseg": rng.integers(-1, 5, (h, w)).astype(np.int32),
      "depth": rng.uniform(0.5, 5.0, (h, w, 1)).astype(np.float32),
      "normal": normal,
      "edge": (rng.random((h, w, 1)) < 0.2).astype(np.float32),
  }


def test_resize_train_matches_opencv():
  ex = _example(10, 14)
  out = geometry.fit(ex, size=(16, 20), geometry="resize", role="train", tasks=ex)
  np.testing.assert_array_equal(out["box"], [0, 0, 16, 20])
  ref = np.clip(cv2.resize(ex["image"], (20, 16), interpolation=cv2.INTER_CUBIC), 0, 1)
  np.testing.assert_allclose(out["image"], ref, atol=1e-6)
  np.testing.assert_array_equal(
      out["semseg"],
      cv2.resize(ex["semseg"], (20, 16), interpolation=cv2.INTER_NEAREST),
  )
  np.testing.assert_array_equal(
      out["depth"][..., 0],
      cv2.resize(ex["depth"][..., 0], (20, 16), interpolation=cv2.INTER_NEAREST),
  )
  norms = np.linalg.norm(out["normal"], axis=-1)
  assert out["normal"].shape == (16, 20, 3)
  np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
  assert norms[0, 0] == 0  # The invalid pixel stays invalid (nearest validity mask).


def test_resize_eval_keeps_ground_truth_at_its_size():
  ex = _example(10, 14)
  out = geometry.fit(ex, size=(16, 20), geometry="resize", role="eval", tasks=ex)
  np.testing.assert_array_equal(out["box"], [0, 0, 10, 14])
  assert out["image"].shape == (16, 20, 3)
  np.testing.assert_array_equal(out["semseg"][:10, :14], ex["semseg"])
  assert (out["semseg"][10:] == -1).all() and (out["semseg"][:, 14:] == -1).all()
  assert (out["edge"][10:] == 255).all() and (out["depth"][:, 14:] == 0).all()


def test_pad_centres_and_refuses_larger_images():
  ex = _example(9, 13)
  out = geometry.fit(ex, size=(16, 20), geometry="pad", role="train", tasks=ex)
  top, left = (16 - 9) // 2, (20 - 13) // 2
  np.testing.assert_array_equal(out["box"], [top, left, 9, 13])
  np.testing.assert_array_equal(out["image"][top : top + 9, left : left + 13], ex["image"])
  assert out["image"][:top].max() == 0 and (out["semseg"][:top] == -1).all()
  with pytest.raises(ValueError, match="does not fit the 8x8 canvas"):
    geometry.fit(ex, size=(8, 8), geometry="pad", role="eval", tasks=ex)
  with pytest.raises(ValueError, match="geometry='crop'"):
    geometry.fit(ex, size=(16, 20), geometry="crop", role="eval")


@pytest.mark.parametrize("box", [(0, 0, 9, 11), (0, 0, 12, 16), (0, 0, 5, 7)])
def test_resize_into_box_matches_opencv(box):
  pred = np.random.default_rng(1).normal(size=(2, 12, 16, 3)).astype(np.float32)
  boxes = jnp.asarray([box, (0, 0, 0, 0)], jnp.int32)  # The second: a padding example.
  _, _, h, w = box
  for nearest, flag in ((False, cv2.INTER_LINEAR), (True, cv2.INTER_NEAREST)):
    out = np.asarray(evaluation.resize_into_box(jnp.asarray(pred), boxes, nearest=nearest))
    np.testing.assert_allclose(
        out[0, :h, :w], cv2.resize(pred[0], (w, h), interpolation=flag), atol=1e-5
    )
    assert not out[0, h:].any() and not out[0, :, w:].any() and not out[1].any()


def _tf(example):
  return {k: tf.constant(v) for k, v in example.items()}


def test_scale_pad_keeps_content_within_the_new_box():
  ex = geometry.fit(
      _example(9, 13),
      size=(16, 20),
      geometry="pad",
      role="train",
      tasks=_example(1, 1),
  )
  records = [tasks_lib.get_task(k) for k in ("semseg", "depth", "normal", "edge")]
  for s in range(6):
    out = augment.random_scale_pad(_tf(ex), tf.constant([s, 7]), (0.5, 2.0), records)
    top, left, h, w = out["box"].numpy()
    inside = np.zeros((16, 20), bool)
    inside[top : top + h, left : left + w] = True
    assert (out["semseg"].numpy()[~inside] == -1).all()
    assert (out["edge"].numpy()[~inside] == 255).all()
    assert not out["image"].numpy()[~inside].any()
    values = set(np.unique(out["semseg"].numpy()[inside]))
    assert values <= set(np.unique(ex["semseg"]))
    assert {k: v.shape for k, v in out.items()} == {k: tuple(v.shape) for k, v in ex.items()}


def test_scale_pad_divides_depth_by_the_scale():
  ex = geometry.fit(_example(8, 8), size=(8, 8), geometry="pad", role="train")
  ex["depth"] = np.full((8, 8, 1), 2.0, np.float32)
  for s in range(4):
    out = augment.random_scale_pad(_tf(ex), tf.constant([s, 3]), (0.5, 0.5))
    top, left, h, w = out["box"].numpy()
    assert (h, w) == (4, 4)
    np.testing.assert_allclose(out["depth"].numpy()[top : top + h, left : left + w], 4.0)


def test_centre_zoom_crops_the_centre():
  image = np.arange(10 * 10 * 3, dtype=np.float32).reshape(10, 10, 3) / 300.0
  ex = {
      "image": tf.constant(image),
      "semseg": tf.constant(np.arange(100, dtype=np.int32).reshape(10, 10)),
  }
  out = augment.centre_zoom(ex, tf.constant([0, 1]), scales=(2.0,))
  # h = w = 5 at offset ((10 - 5) // 2) = 2: nearest upsampling by 2 repeats rows/cols 2..6.
  expected = np.arange(100).reshape(10, 10)[2:7, 2:7].repeat(2, 0).repeat(2, 1)
  np.testing.assert_array_equal(out["semseg"].numpy(), expected)


def test_photometric_distortion_stays_in_range_and_varies():
  image = tf.constant(np.random.default_rng(0).random((6, 8, 3), dtype=np.float32))
  outs = [augment.photometric_distortion(image, tf.constant([s, 0])).numpy() for s in range(8)]
  assert all(o.min() >= 0 and o.max() <= 1 for o in outs)
  assert any(not np.allclose(o, image.numpy()) for o in outs)
  with pytest.raises(ValueError, match="photometric"):
    augment.augment(_tf({"image": image.numpy()}), tf.constant([0, 0]), photometric=True)


def test_flip_mirrors_the_box():
  ex = geometry.fit(_example(4, 6), size=(8, 12), geometry="pad", role="train")
  flips = {
      tuple(augment.random_flip(_tf(ex), tf.constant([s, 0]))["box"].numpy()) for s in range(10)
  }
  assert flips == {(2, 3, 4, 6), (2, 12 - 3 - 6, 4, 6)}


def test_canvas_size_and_resize_back_follow_the_config():
  config = default.get_config()
  config.dataset.name = "nyudmt"
  assert sources.canvas_size(config) == (480, 640) and evaluation.resizes_back(config)
  config.dataset.geometry = "pad"
  assert sources.canvas_size(config) == (448, 576) and not evaluation.resizes_back(config)
  config.dataset.size = (64, 96)
  assert sources.canvas_size(config) == (64, 96)
  config.dataset.size = (64,)
  with pytest.raises(ValueError, match="dataset.size"):
    sources.canvas_size(config)


def test_delta_m_references_per_dataset():
  config = default.get_config()
  config.dataset.name = "cityscapes"
  config.tasks = ("semseg", "depth")
  config.label_setting = "onelabel"
  assert evaluation.delta_m_references(config) == {
      "semseg": {"miou": 70.04},
      "depth": {"abs_err": 0.0140},
  }
  config.label_setting = "randomlabels"  # MTPSL has no Cityscapes randomlabels numbers.
  assert evaluation.delta_m_references(config) is None
  config.dataset.name = "pascal_context"
  assert evaluation.delta_m_references(config) is None
  config.delta_m_reference = "full"
  with pytest.raises(ValueError, match="no STL references"):
    evaluation.delta_m_references(config)
