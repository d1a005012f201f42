"""Joint geometric augmentation of one dense multi-task example (TensorFlow ops for tf.data maps).

Reference: docs/metrics.md, "Augmentation (MTPSL NYUv2)"; MTPSL
``dataset/nyuv2ssl.py`` ``RandomScaleCrop`` (credited to lorenmt/mtan issue #34).

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
DEFAULT_SCALE_RANGE = (0.5, 2.0)  # ATRC / InvPT RandomScaling.
AUGMENTATIONS = ("scale_crop", "centre_zoom", "scale_pad")


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
  return _zoom(example, *scale_crop_params(seed, height, width, scales), tasks)


def centre_zoom(
    example: Mapping[str, tf.Tensor],
    seed: tf.Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> dict[str, tf.Tensor]:
  """MTI-Net / MT-CP ``ScaleNRotate`` with rotation 0: a zoom by s about the image centre.

  s is uniform over ``scales`` (MTI-Net's NYUD: {1.0, 1.2, 1.5}); the centred h = int(H / s),
  w = int(W / s) window at ((H − h) // 2, (W − w) // 2) is resized back to H x W by the
  records' rules, and values scale as in ``random_scale_crop`` (depth in metres / s). MTI-Net
  warps the original image about its centre with ``cv2.warpAffine`` before ``FixedResize``;
  here the zoom follows the canvas resize (``mtjax.data.geometry``), and the window is
  pixel-aligned (at most half a pixel from MTI-Net's centre). Reference: MTI-Net
  ``data/custom_transforms.py`` ``ScaleNRotate``; docs/datasets.md (augmentation).

  Args, Returns, Raises: as ``random_scale_crop``.
  """
  height, width = tf.unstack(tf.shape(example["image"])[:2])
  scale, h, w, _, _ = scale_crop_params(seed, height, width, scales)
  return _zoom(example, scale, h, w, (height - h) // 2, (width - w) // 2, tasks)


def _zoom(example, scale, h, w, i, j, tasks) -> dict[str, tf.Tensor]:
  """The [i : i + h, j : j + w] window of every map resized back to H x W, values scaled by s."""
  height, width = tf.unstack(tf.shape(example["image"])[:2])
  size = tf.stack([height, width])
  crop = {k: example[k][i : i + h, j : j + w] for k in _dense_keys(example)}
  out = dict(example)
  for key, x in crop.items():
    task = _rule(key, tasks)
    out[key] = _resize(x, size, "bilinear" if key == "image" else task.resize if task else "nearest")
    out[key] = _scale_values(out[key], task, scale)
  return {k: tf.ensure_shape(v, example[k].shape) for k, v in out.items()}


def _scale_values(x: tf.Tensor, task: tasks_lib.Task | None, scale: tf.Tensor) -> tf.Tensor:
  """``x`` times s ** ``task.scale_power`` (divided for negative powers: depth / s exactly)."""
  if task is None or not task.scale_power:
    return x
  factor = tf.cast(scale, tf.float32) ** abs(task.scale_power)
  return x * factor if task.scale_power > 0 else x / factor


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

  Reference: docs/metrics.md (flip exists in MTPSL's unused
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
  out = {**example, **tf.cond(do_flip, flipped, lambda: dense)}
  if "box" in example:  # The native content's place, mirrored.
    top, left, h, w = tf.unstack(example["box"])
    width = tf.shape(example["image"])[1]
    out["box"] = tf.where(do_flip, tf.stack([top, width - left - w, h, w]), example["box"])
  return out


def random_scale_pad(
    example: Mapping[str, tf.Tensor],
    seed: tf.Tensor,
    scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE,
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> dict[str, tf.Tensor]:
  """ATRC / InvPT ``RandomScaling`` + ``RandomCrop`` + ``PadImage`` on a canvas-fitted example.

  The native content (``box`` = (top, left, h, w), ``mtjax.data.geometry``) is scaled by
  s ~ U(``scale_range``) to int(h s) x int(w s) (image bilinear with half-pixel centres, as
  ``cv2.INTER_LINEAR``; every ground truth nearest, normals too; values scaled as in
  ``random_scale_crop``: depth / s), cropped to at most the canvas H x W at an offset uniform in
  [0, max(dim − crop, 0)], and centre-padded back to H x W (image 0, each task's ignore value,
  regions −1). ``box`` becomes the crop's place on the canvas. ATRC's ``cat_max_ratio`` re-draws
  (a crop whose largest class covers >= 75 % is re-drawn up to 10 times) are not made.
  Reference: ATRC ``src/data/transforms.py``; InvPT ``InvPT/data/transforms.py``;
  docs/datasets.md (augmentation, ATRC / InvPT).

  Args:
    example: maps at the canvas size and ``box`` int32 [4].
    seed: int32/int64 [2] stateless seed.
    scale_range: (low, high) of the uniform scale, 0 < low <= high.
    tasks: as ``random_scale_crop``'s.

  Returns:
    a new dict with the same keys, shapes and dtypes.

  Raises:
    ValueError: no ``box``, or a bad ``scale_range``.
  """
  if "box" not in example:
    raise ValueError("random_scale_pad needs the example's box (a canvas-fitted source)")
  low, high = (float(v) for v in scale_range)
  if not 0 < low <= high:
    raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
  height, width = example["image"].shape[:2]
  seed_s, seed_i, seed_j = tf.unstack(tf.random.split(seed, 3))
  scale = tf.random.stateless_uniform([], seed_s, low, high, dtype=tf.float64)
  top, left, h, w = tf.unstack(tf.cast(example["box"], tf.int32))
  nh = tf.maximum(tf.cast(tf.cast(h, tf.float64) * scale, tf.int32), 1)
  nw = tf.maximum(tf.cast(tf.cast(w, tf.float64) * scale, tf.int32), 1)
  ch, cw = tf.minimum(nh, height), tf.minimum(nw, width)
  i = tf.random.stateless_uniform([], seed_i, 0, nh - ch + 1, dtype=tf.int32)
  j = tf.random.stateless_uniform([], seed_j, 0, nw - cw + 1, dtype=tf.int32)
  pad_top, pad_left = (height - ch) // 2, (width - cw) // 2
  out = dict(example)
  for key in _dense_keys(example):
    x = example[key][top : top + h, left : left + w]
    task = _rule(key, tasks)
    flat = len(x.shape) == 2
    x = x[..., None] if flat else x
    if key == "image":
      y = tf.image.resize(x, tf.stack([nh, nw]), "bilinear", antialias=False)
    else:
      y = _nearest(x, tf.stack([nh, nw]))
    y = _scale_values(y[i : i + ch, j : j + cw], task, scale)
    fill = 0 if key == "image" else -1 if key == "regions" else task.ignore
    y = tf.pad(
        y - tf.cast(fill, y.dtype),
        [[pad_top, height - ch - pad_top], [pad_left, width - cw - pad_left], [0, 0]],
    ) + tf.cast(fill, y.dtype)
    out[key] = tf.ensure_shape(y[..., 0] if flat else y, example[key].shape)
  out["box"] = tf.stack([pad_top, pad_left, ch, cw])
  return out


def photometric_distortion(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """ATRC / InvPT ``PhotoMetricDistortion`` (mmsegmentation's), on an image in [0, 1].

  Each op with probability 0.5: brightness + U(−32, 32) / 255; contrast × U(0.5, 1.5) (before
  the others or after them, p 0.5); saturation × U(0.5, 1.5) in HSV; hue + randint(−18, 17) /
  180 of the circle (OpenCV's 0..180 hue units). Values are clipped to [0, 1] after each op; the
  reference works on uint8-rounded float arrays, this on float32 (no rounding between ops).
  Reference: ATRC ``src/data/transforms.py``; docs/datasets.md (augmentation, step 4).

  Args:
    image: float32 [H, W, 3] in [0, 1].
    seed: int32/int64 [2] stateless seed.

  Returns:
    float32 [H, W, 3] in [0, 1].
  """
  seeds = tf.unstack(tf.random.split(seed, 9))
  coin = [tf.random.stateless_uniform([], s) < 0.5 for s in seeds[:5]]
  brightness = tf.random.stateless_uniform([], seeds[5], -32.0, 32.0) / 255.0
  contrast = tf.random.stateless_uniform([], seeds[6], 0.5, 1.5)
  saturation = tf.random.stateless_uniform([], seeds[7], 0.5, 1.5)
  hue = tf.cast(tf.random.stateless_uniform([], seeds[8], -18, 18, dtype=tf.int32), tf.float32) / 180.0

  def maybe(apply, flag, x):
    return tf.where(flag, tf.clip_by_value(apply(x), 0.0, 1.0), x)

  contrast_first = coin[4]
  x = maybe(lambda v: v + brightness, coin[0], image)
  x = maybe(lambda v: v * contrast, tf.logical_and(coin[1], contrast_first), x)
  x = maybe(lambda v: tf.image.adjust_saturation(v, saturation), coin[2], x)
  x = maybe(lambda v: tf.image.adjust_hue(v, hue), coin[3], x)
  return maybe(lambda v: v * contrast, tf.logical_and(coin[1], tf.logical_not(contrast_first)), x)


def options(config_augment) -> dict:
  """``augment``'s keyword arguments (``pipeline.train_dataset``'s names) from ``config.augment``:
  ``augmentation``, ``scales``, ``flip``, ``scale_range``, ``photometric``, and how a second view
  is drawn, ``second_view`` (``SECOND_VIEWS``)."""
  return {
      "augmentation": config_augment.name,
      "scales": tuple(config_augment.scales),
      "flip": bool(config_augment.flip),
      "scale_range": tuple(config_augment.scale_range),
      "photometric": bool(config_augment.photometric),
      "second_view": config_augment.get("second_view", "independent"),
  }


# A second view (``pipeline.train_dataset(views=2)``): ``independent``, another augmentation of the
# stored example; ``of_first``, an augmentation of the first view (MTPSL's ``nyu_mtl_xtc.py`` and
# RDC's ``dataset/nyuv2ssl.py`` lines 161-162 crop the first view's crop again: zooms multiply).
SECOND_VIEWS = ("independent", "of_first")


def augment(
    example: Mapping[str, tf.Tensor],
    seed: tf.Tensor,
    *,
    name: str = "scale_crop",
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE,
    photometric: bool = False,
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> dict[str, tf.Tensor]:
  """Training augmentation ``name`` (``AUGMENTATIONS``), then (if ``flip``) ``random_flip``.

  - ``scale_crop`` (MTPSL's RandomScaleCrop): ``random_scale_crop`` then the flip;
  - ``centre_zoom`` (MTI-Net / MT-CP): the flip then ``centre_zoom``;
  - ``scale_pad`` (ATRC / InvPT): ``random_scale_pad``, the flip, and (if ``photometric``)
    ``photometric_distortion`` of the image.

  The steps use independent sub-seeds of ``seed`` (``tf.random.split``). ``scales=(1.0,)``
  makes the zooms the identity and they are skipped. References: docs/metrics.md
  "Augmentation (MTPSL NYUv2)", "NYUD-MT" (augmentation).

  Args:
    example: see ``random_scale_crop`` (``scale_pad``: also ``box``).
    seed: int32/int64 [2] stateless seed.
    name: one of ``AUGMENTATIONS``.
    scales: candidate zoom factors, each >= 1 (``scale_crop``, ``centre_zoom``).
    flip: whether to apply the random horizontal flip.
    scale_range: ``scale_pad``'s uniform scale range.
    photometric: ``scale_pad``: colour distortion of the image.
    tasks: the records whose rules apply (``random_scale_crop``).

  Returns:
    a new dict with the same keys, shapes and dtypes.

  Raises:
    ValueError: unknown ``name``, bad ``scales`` / ``scale_range``, ``scale_pad`` without
      ``box``, or ``photometric`` with another augmentation.
  """
  if name not in AUGMENTATIONS:
    raise ValueError(f"augmentation {name!r}; expected one of {AUGMENTATIONS}")
  if photometric and name != "scale_pad":
    raise ValueError(f"photometric distortion belongs to 'scale_pad' (ATRC), not {name!r}")
  scales = _check_scales(scales)
  seed_crop, seed_flip = tf.unstack(tf.random.split(seed, 2))  # The streams of earlier versions.
  seed_colour = tf.random.experimental.stateless_fold_in(seed, 2)
  out = dict(example)
  if name == "scale_crop":
    if scales != (1.0,):
      out = random_scale_crop(out, seed_crop, scales, tasks)
    return random_flip(out, seed_flip, tasks) if flip else out
  if name == "centre_zoom":
    out = random_flip(out, seed_flip, tasks) if flip else out
    return centre_zoom(out, seed_crop, scales, tasks) if scales != (1.0,) else out
  out = random_scale_pad(out, seed_crop, scale_range, tasks)
  out = random_flip(out, seed_flip, tasks) if flip else out
  if photometric:
    out["image"] = photometric_distortion(out["image"], seed_colour)
  return out
