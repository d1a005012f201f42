"""Joint geometric augmentation of one dense multi-task example (TensorFlow ops for tf.data maps).

Reference: shared/reference/DATA_AND_METRICS.md, "Augmentation (MTPSL NYUv2)"; MTPSL
``dataset/nyuv2ssl.py`` ``RandomScaleCrop`` (credited to lorenmt/mtan issue 34).

An example is a dict of unbatched tensors: ``image`` float32 [H, W, 3] in [0, 1]; optionally
``regions`` int32 [H, W] and the ground truth of any registered task (``mtjax.tasks``) under its
name, transformed by the task record's rules (``Task.resize``, ``Task.flip_sign``,
``Task.scale_power``): e.g. ``semseg`` int32 [H, W] nearest; ``depth`` float32 [H, W, 1] metres
nearest, divided by the zoom; ``normal`` float32 [H, W, 3] bilinear and re-normalised, x negated by
a flip. Any other key passes through unchanged.
Randomness is stateless: the result is a deterministic function of the example and ``seed``, a
shape-[2] int32/int64 tensor.

Resampling reproduces MTPSL's PyTorch calls:
- bilinear = ``F.interpolate(mode="bilinear", align_corners=True)``, src = dst * (in - 1) / (out - 1)
  = ``tf.raw_ops.ResizeBilinear(align_corners=True, half_pixel_centers=False)``;
- nearest = ``F.interpolate(mode="nearest")`` (legacy), src = min(floor(dst * in / out), in - 1)
  in float32 = ``tf.raw_ops.ResizeNearestNeighbor(align_corners=False, half_pixel_centers=False)``.
(``tf.image.resize`` offers neither convention.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from mtjax import tasks as tasks_lib

DEFAULT_SCALES = (1.0, 1.2, 1.5)


# Python-level lookups of the task records: AutoGraph (tf.data traces the callers) must call them as
# they are, not convert them (converting the registry's functions mixes them up).
@tf.autograph.experimental.do_not_convert
def _dense_keys(example: Mapping[str, tf.Tensor]) -> list[str]:
  """The keys of ``example`` that are pixel maps: image, regions and registered tasks."""
  known = {"image", "regions", *tasks_lib.names()}
  return [k for k in example if k in known]


@tf.autograph.experimental.do_not_convert
def _rule(key: str, tasks: Sequence[tasks_lib.Task] | None) -> tasks_lib.Task | None:
  """The task record that says how ``key`` is transformed: the one of ``tasks`` named ``key``,
  else the registered task's default record; None for image and regions."""
  for task in tasks or ():
    if task.name == key:
      return task
  return tasks_lib.get_task(key) if key in tasks_lib.names() else None


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
  scales = tuple(float(s) for s in scales)
  if not scales or min(scales) < 1.0:
    raise ValueError(
        f"scales must be a non-empty sequence of floats >= 1 (crop then upsample), got {scales}."
    )
  return scales


def _bilinear(x: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """[h, w, C] -> float32 [H, W, C], PyTorch bilinear with align_corners=True."""
  return tf.raw_ops.ResizeBilinear(
      images=x[None], size=size, align_corners=True, half_pixel_centers=False
  )[0]


def _nearest(x: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """[h, w, C] -> [H, W, C] of the same dtype, PyTorch legacy nearest."""
  return tf.raw_ops.ResizeNearestNeighbor(
      images=x[None], size=size, align_corners=False, half_pixel_centers=False
  )[0]


def scale_crop_params(
    seed: tf.Tensor,
    height: int | tf.Tensor,
    width: int | tf.Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
  """Draws MTPSL RandomScaleCrop parameters.

  s is uniform over ``scales``; the crop is h = int(H / s), w = int(W / s) (float64 division and
  truncation, as Python's ``int(height / sc)``) at offset i ~ U{0..H-h}, j ~ U{0..W-w}.

  Args:
    seed: int32/int64 [2] stateless seed.
    height, width: H, W of the example.
    scales: candidate scale factors, each >= 1.

  Returns:
    (scale float64 [], h int32 [], w int32 [], i int32 [], j int32 []) — the values of MTPSL's
    ``trans_params`` [sc, h, w, i, j].

  Raises:
    ValueError: ``scales`` empty or containing a value < 1.
  """
  scales = _check_scales(scales)
  seed_s, seed_i, seed_j = tf.unstack(tf.random.split(seed, 3))
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  pick = tf.random.stateless_uniform([], seed_s, minval=0, maxval=len(scales), dtype=tf.int32)
  scale = tf.gather(tf.constant(scales, tf.float64), pick)
  h = tf.cast(tf.cast(height, tf.float64) / scale, tf.int32)
  w = tf.cast(tf.cast(width, tf.float64) / scale, tf.int32)
  i = tf.random.stateless_uniform([], seed_i, minval=0, maxval=height - h + 1, dtype=tf.int32)
  j = tf.random.stateless_uniform([], seed_j, minval=0, maxval=width - w + 1, dtype=tf.int32)
  return scale, h, w, i, j


def random_scale_crop(
    example: Mapping[str, tf.Tensor],
    seed: tf.Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> dict[str, tf.Tensor]:
  """MTPSL RandomScaleCrop: crop a 1/s-sized window and resize it back to H x W.

  Parameters come from ``scale_crop_params(seed, H, W, scales)``. ``image`` is resized
  bilinearly and ``regions`` by nearest neighbour; each task's ground truth by its record's
  ``resize`` (semseg, depth, binary maps: nearest; normals: "bilinear_unit"), then multiplied by
  s ** ``scale_power`` (depth in metres: divided by s, as MTPSL does for NYUv2: zooming in by s
  brings the scene s times closer). Unlike MTPSL, normals are re-normalised to unit length after
  the bilinear resize; a pixel is invalid (exactly 0) where the nearest-resized validity mask is 0
  or the interpolated vector vanishes.

  Args:
    example: dict with ``image`` float32 [H, W, 3] and optionally ``regions`` int32 [H, W] and
      task ground truths (module docstring); other keys pass through.
    seed: int32/int64 [2] stateless seed.
    scales: candidate scale factors, each >= 1.
    tasks: the task records whose rules apply (e.g. depth in disparity units); a task key not
      among them takes its registered default record.

  Returns:
    a new dict with the same keys, shapes and dtypes.

  Raises:
    ValueError: bad ``scales``.
  """
  height, width = tf.unstack(tf.shape(example["image"])[:2])
  scale, h, w, i, j = scale_crop_params(seed, height, width, scales)
  size = tf.stack([height, width])
  crop = {k: example[k][i : i + h, j : j + w] for k in _dense_keys(example)}
  out = dict(example)
  for key, x in crop.items():
    task = _rule(key, tasks)
    out[key] = _resize(x, size, "bilinear" if key == "image" else task.resize if task else "nearest")
    if task is not None and task.scale_power:  # Divide for negative powers: depth / s exactly.
      factor = tf.cast(scale, tf.float32) ** abs(task.scale_power)
      out[key] = out[key] * factor if task.scale_power > 0 else out[key] / factor
  return {k: tf.ensure_shape(v, example[k].shape) for k, v in out.items()}


def _resize(x: tf.Tensor, size: tf.Tensor, rule: str) -> tf.Tensor:
  """[h, w, ...] -> [H, W, ...] by a ``Task.resize`` rule; maps without a channel axis (ids)
  keep none."""
  flat = len(x.shape) == 2
  if flat:
    x = x[..., None]
  if rule == "nearest":  # Ids: nearest, so labels and regions stay aligned.
    y = _nearest(x, size)
  elif rule == "bilinear":
    y = _bilinear(x, size)
  else:  # bilinear_unit: unit vectors, invalid (all-zero) where the nearest-resized mask says so.
    valid = tf.cast(tf.reduce_any(x != 0, axis=-1, keepdims=True), tf.float32)
    unit = tf.math.l2_normalize(_bilinear(x, size), axis=-1)
    y = tf.where(_nearest(valid, size) > 0, unit, 0.0)
  return y[..., 0] if flat else y


def random_flip(
    example: Mapping[str, tf.Tensor],
    seed: tf.Tensor,
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> dict[str, tf.Tensor]:
  """Horizontal flip with probability 0.5; each task's channels are multiplied by its record's
  ``flip_sign`` (normals: x negated).

  Reference: DATA_AND_METRICS.md "Augmentation (MTPSL NYUv2)" (flip exists in MTPSL's unused
  loader; MT-CP uses p = 0.5).

  Args:
    example: dict of [H, W, ...] tensors ``image``, ``regions`` and task ground truths (any
      subset); other keys pass through unchanged.
    seed: int32/int64 [2] stateless seed.
    tasks: as ``random_scale_crop``'s.

  Returns:
    a new dict with the same keys, shapes and dtypes.
  """
  dense = {k: example[k] for k in _dense_keys(example)}

  def flipped():
    out = {k: tf.reverse(v, axis=[1]) for k, v in dense.items()}
    for key in out:
      task = _rule(key, tasks)
      if task is not None and task.flip_sign is not None:
        out[key] = out[key] * tf.constant(task.flip_sign, out[key].dtype)
    return out

  do_flip = tf.random.stateless_uniform([], seed) < 0.5
  return {**example, **tf.cond(do_flip, flipped, lambda: dense)}


def augment(
    example: Mapping[str, tf.Tensor],
    seed: tf.Tensor,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> dict[str, tf.Tensor]:
  """Training augmentation: ``random_scale_crop`` then (if ``flip``) ``random_flip``.

  The two steps use independent sub-seeds of ``seed`` (``tf.random.split``). ``scales=(1.0,)``
  is the identity and is skipped. Reference: DATA_AND_METRICS.md "Augmentation (MTPSL NYUv2)".

  Args:
    example: see ``random_scale_crop``.
    seed: int32/int64 [2] stateless seed.
    scales: candidate scale factors, each >= 1.
    flip: whether to apply the random horizontal flip.
    tasks: the records whose rules apply (``random_scale_crop``).

  Returns:
    a new dict with the same keys, shapes and dtypes.

  Raises:
    ValueError: bad ``scales``.
  """
  scales = _check_scales(scales)
  seed_crop, seed_flip = tf.unstack(tf.random.split(seed, 2))
  out = dict(example)
  if scales != (1.0,):
    out = random_scale_crop(out, seed_crop, scales, tasks)
  if flip:
    out = random_flip(out, seed_flip, tasks)
  return out
