"""The one way models expose the features regularizers read: they ``sow`` them into the
``FEATURES`` collection, and ``features`` collects them after ``apply(..., mutable=[FEATURES])``.

Regularizers that need to know a feature's size before training (a projector's input width, the
bottleneck's stride and width) read it from ``feature_shapes``, never from a model's config or
internals. Every model documents the names it sows. SegNet-MTL: ``"bottleneck"`` [B, H/2**S, W/2**S, f[-1]]
(the encoder's output after its last max-pool, S = len(filters); MTPSL's ``feat``), ``"decoder"``
[B, H, W, f[0]] (the shared decoder's output), ``"head_<task>"`` [B, H, W, f[0]] (each task
head's hidden layer, before its 1x1 conv). Sowing is free when ``FEATURES`` is not mutable:
predictions and parameters are the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

FEATURES = "intermediates"


def features(mutated: Mapping[str, Any]) -> dict[str, jax.Array]:
  """The features sown during ``apply(..., mutable=[FEATURES, ...])``.

  Args:
    mutated: the collections ``apply`` returned as mutated (a dict that may hold ``FEATURES``).

  Returns:
    dict name -> array (in the model's compute dtype); {} if nothing was sown.
  """
  return {name: values[0] for name, values in mutated.get(FEATURES, {}).items()}


def feature_shapes(model: nn.Module, image_shape: tuple[int, int]) -> dict[str, jax.ShapeDtypeStruct]:
  """The features ``model`` sows for one image [1, H, W, 3], as shapes (nothing is computed:
  ``jax.eval_shape`` of init and apply).

  Args:
    model: a model following this module's interface. image_shape: (H, W).

  Returns:
    dict name -> ``jax.ShapeDtypeStruct`` [1, h, w, C].

  Raises:
    ValueError: the model's own errors for that image size.
  """
  x = jax.ShapeDtypeStruct((1, *image_shape, 3), jnp.float32)

  def sown(images):
    variables = model.init(jax.random.key(0), images, train=False)
    _, mutated = model.apply(variables, images, train=False, mutable=[FEATURES])
    return features(mutated)

  return jax.eval_shape(sown, x)


def stride_and_channels(shape: jax.ShapeDtypeStruct, image_shape: tuple[int, int]) -> tuple[int, int]:
  """(stride, channels) of a feature of ``shape`` [1, h, w, C] on images ``image_shape`` (H, W).

  Raises:
    ValueError: H / h is not an integer equal to W / w.
  """
  (_, h, w, c), (height, width) = shape.shape, image_shape
  if height % h or width % w or height // h != width // w:
    raise ValueError(f"a {h}x{w} feature of a {height}x{width} image has no integer stride")
  return height // h, c
