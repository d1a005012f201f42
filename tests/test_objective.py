"""mtjax.objective.forward_views: which view each loss term reads, and BatchNorm over both."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax import objective


class _Normalise(nn.Module):
  """BatchNorm alone: its output and running mean say which images its statistics covered."""

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.BatchNorm(use_running_average=not train, momentum=0.5, epsilon=1e-5)(x)
    return {"semseg": y}


def _batch(b=2):
  rng = np.random.default_rng(0)
  image = lambda: rng.normal(size=(b, 4, 6, 3)).astype(np.float32)
  labels = lambda: rng.integers(0, 5, (b, 4, 6)).astype(np.int32)
  return {
      "image": image(),
      "semseg": labels(),
      "view2/image": image() + 3.0,  # Shifted: statistics over both views differ from either's.
      "view2/semseg": labels(),
      "label_mask": np.eye(3, dtype=np.float32)[:b],
      "valid": np.ones((b,), np.float32),
  }


def _forward(batch, regularizer):
  model = _Normalise()
  variables = model.init(jax.random.key(0), jnp.asarray(batch["image"]), train=False)
  return objective.forward_views(
      variables["params"],
      variables["batch_stats"],
      batch,
      model=model,
      regularizer=regularizer,
      rng=jax.random.key(1),
  )


def _two_view_regularizer():
  return types.SimpleNamespace(views=2, needs_features=False)


def test_two_views_go_through_batchnorm_as_one_batch_and_split_by_view():
  batch = _batch()
  views = _forward(batch, _two_view_regularizer())
  both = np.concatenate([batch["image"], batch["view2/image"]]).astype(np.float64)
  mean, var = both.mean((0, 1, 2)), both.var((0, 1, 2))
  expected = (both - mean) / np.sqrt(var + 1e-5)
  np.testing.assert_allclose(views.predictions["semseg"], expected[:2], atol=1e-5)
  np.testing.assert_allclose(views.reg_predictions["semseg"], expected[2:], atol=1e-5)
  running = views.updates["batch_stats"]["BatchNorm_0"]["mean"]
  np.testing.assert_allclose(running, 0.5 * mean, rtol=1e-5)  # Momentum 0.5 from a mean of 0.
  assert set(views.reg_batch) == {"image", "semseg", "label_mask", "valid"}
  np.testing.assert_array_equal(views.reg_batch["image"], batch["view2/image"])
  np.testing.assert_array_equal(views.reg_batch["semseg"], batch["view2/semseg"])
  np.testing.assert_array_equal(views.reg_batch["label_mask"], batch["label_mask"])
  assert views.features == {}


@pytest.mark.parametrize(
    "regularizer", [None, types.SimpleNamespace(views=1, needs_features=False)]
)
def test_one_view_is_read_by_both_terms(regularizer):
  batch = _batch()
  views = _forward(batch, regularizer)
  image = batch["image"].astype(np.float64)
  expected = (image - image.mean((0, 1, 2))) / np.sqrt(image.var((0, 1, 2)) + 1e-5)
  np.testing.assert_allclose(views.predictions["semseg"], expected, atol=1e-5)
  np.testing.assert_array_equal(views.reg_predictions["semseg"], views.predictions["semseg"])
  assert views.reg_batch is batch


def test_two_views_need_the_second_image():
  batch = _batch()
  del batch["view2/image"]
  with pytest.raises(KeyError, match="view2/image"):
    _forward(batch, _two_view_regularizer())
