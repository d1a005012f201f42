"""Fitting variable-size examples to one canvas: the two protocols of NYUD-MT and PASCAL-Context.

The tf.data pipeline batches examples of one shape, but NYUD-MT and PASCAL-Context images come in
their own sizes (PASCAL: at most 500 px a side). The field fits them to a canvas in two ways
(docs: docs/datasets.md):

- ``resize`` (MTI-Net, MT-CP ``FixedResize``): training examples are resized to the canvas
  (image cubic, ids / depth / binary maps nearest, normals cubic (MTI-Net) or nearest (MT-CP) then
  re-normalised by ‖n‖ + 1e-12); evaluation examples have the image resized but keep their
  ground truth at its own size, placed at the canvas's top-left corner with the ignore value
  around it, so metrics score predictions resized back to the original size
  (``evaluation.resize_back``) against the un-resized ground truth, as MTI-Net's offline
  evaluation does.
- ``pad`` (ATRC, InvPT ``PadImage``): image and ground truth are centre-padded to the canvas
  (image 0, each task's ignore value), for training and evaluation alike; evaluation scores
  the padded tensors, whose padding is ignored.

Every fitted example carries ``box`` int32 [4] = (top, left, height, width): where the example's
native ground truth lies on the canvas (the whole canvas for a resized training example). The
``scale_pad`` augmentation crops the native content by it, and evaluation resizes predictions
into it.

Resampling is OpenCV's ``cv2.resize`` (the references' own call): half-pixel centres for linear
and cubic (a = −0.75), ``floor(dst · in / out)`` for nearest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from mtjax import tasks as tasks_lib

GEOMETRIES = ("resize", "pad")
FITTED_DATASETS = ("nyudmt", "pascal_context")  # config.dataset.name of the fitted readers
ROLES = ("train", "eval")
NORMAL_INTERPOLATIONS = ("cubic", "nearest")
_CV2 = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def resize(x: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
  """``x`` [h, w] or [h, w, C] resized to ``size`` = (H, W) with ``cv2.resize``.

  Args:
    x: float32 / int32 / uint8 map; any channel count (resized in chunks of 4 channels).
    size: (H, W) of the output.
    interpolation: "nearest" | "linear" | "cubic".

  Returns:
    the map at [H, W] (or [H, W, C]), the dtype of ``x``. int32 maps must use "nearest".

  Raises:
    ValueError: an unknown interpolation, or int32 with anything but "nearest".
  """
  if interpolation not in _CV2:
    raise ValueError(f"interpolation={interpolation!r}; expected one of {tuple(_CV2)}")
  height, width = int(size[0]), int(size[1])
  if x.shape[:2] == (height, width):
    return x
  if x.dtype == np.int32 and interpolation != "nearest":
    raise ValueError("integer ids can only be resized with interpolation='nearest'")
  # OpenCV resamples int32 only with INTER_NEAREST; float32 with every flag.
  flat = x.ndim == 2
  x3 = x[..., None] if flat else x
  parts = [
      cv2.resize(x3[..., c : c + 4], (width, height), interpolation=_CV2[interpolation])
      for c in range(0, x3.shape[-1], 4)
  ]
  parts = [p[..., None] if p.ndim == 2 else p for p in parts]
  y = np.concatenate(parts, axis=-1)
  return y[..., 0] if flat else y


def place(
    x: np.ndarray, size: tuple[int, int], fill: float, *, centre: bool
) -> tuple[np.ndarray, tuple[int, int]]:
  """``x`` [h, w, ...] on a canvas [H, W, ...] filled with ``fill``.

  Args:
    x: the map; h <= H and w <= W.
    size: (H, W).
    fill: the value around ``x``.
    centre: centre ``x`` (top = (H − h) // 2, left = (W − w) // 2, InvPT's ``PadImage``) or put
      it at the top-left corner.

  Returns:
    (canvas of ``x``'s dtype, (top, left)).

  Raises:
    ValueError: ``x`` larger than the canvas.
  """
  height, width = int(size[0]), int(size[1])
  h, w = x.shape[:2]
  if h > height or w > width:
    raise ValueError(f"a {h}x{w} map does not fit the {height}x{width} canvas")
  top, left = ((height - h) // 2, (width - w) // 2) if centre else (0, 0)
  canvas = np.full((height, width, *x.shape[2:]), fill, x.dtype)
  canvas[top : top + h, left : left + w] = x
  return canvas, (top, left)


def _unit(x: np.ndarray) -> np.ndarray:
  return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)).astype(np.float32)


def fit(
    example: Mapping[str, np.ndarray],
    *,
    size: tuple[int, int],
    geometry: str,
    role: str,
    tasks: Sequence[tasks_lib.Task | str] = (),
    normal_interpolation: str = "cubic",
) -> dict[str, np.ndarray]:
  """Fits one native-size example to the canvas (module docstring).

  Args:
    example: ``image`` float32 [h, w, 3] in [0, 1] and ground truths in the task records'
      formats at [h, w, ...] (semseg / human_parts int32, −1 ignore; depth float32 [h, w, 1],
      0 invalid; normal float32 [h, w, 3], all-zero invalid; edge / saliency float32 [h, w, 1]
      in {0, 1}, 255 ignore); optionally ``regions`` int32 [h, w] (−1 none).
    size: the canvas (H, W).
    geometry: "resize" | "pad".
    role: "train" | "eval" (only "resize" treats them differently).
    tasks: the records of the ground truths (their ``ignore`` and ``resize`` rules); a key not
      among them takes its registered default record.
    normal_interpolation: "cubic" (MTI-Net) | "nearest" (MT-CP), for "resize".

  Returns:
    the fitted example: every map at [H, W, ...] and ``box`` int32 [4] (top, left, h, w).

  Raises:
    ValueError: unknown geometry / role / normal_interpolation, or (``pad``, or ``resize`` at
      evaluation) an example larger than the canvas: the message names the sizes.
  """
  if geometry not in GEOMETRIES:
    raise ValueError(f"geometry={geometry!r}; expected one of {GEOMETRIES}")
  if role not in ROLES:
    raise ValueError(f"role={role!r}; expected one of {ROLES}")
  if normal_interpolation not in NORMAL_INTERPOLATIONS:
    raise ValueError(
        f"normal_interpolation={normal_interpolation!r}; expected one of {NORMAL_INTERPOLATIONS}"
    )
  records = {t.name if isinstance(t, tasks_lib.Task) else t: t for t in tasks}
  h, w = example["image"].shape[:2]
  height, width = int(size[0]), int(size[1])
  out = {}
  for key, x in example.items():
    record = records.get(key, key)
    if isinstance(record, str):
      record = tasks_lib.get_task(record) if record in tasks_lib.names() else None
    if key == "image":
      fill = 0.0
    elif key == "regions":
      fill = -1
    elif record is None:
      out[key] = x  # Not a map: passes through.
      continue
    else:
      fill = record.ignore
    if geometry == "resize" and (role == "train" or key == "image"):
      if key == "image":
        y = np.clip(resize(x.astype(np.float32), size, "cubic"), 0.0, 1.0)
      elif record is not None and record.resize == "bilinear_unit":
        valid = np.any(x != 0, axis=-1, keepdims=True).astype(np.float32)
        y = _unit(resize(x.astype(np.float32), size, normal_interpolation))
        y = np.where(resize(valid, size, "nearest") > 0, y, 0.0).astype(np.float32)
      else:
        y = resize(x, size, "nearest")
    else:
      if h > height or w > width:
        raise ValueError(
            f"a {h}x{w} example does not fit the {height}x{width} canvas of geometry "
            f"{geometry!r} ({role}); set config.dataset.size to at least the largest image"
        )
      y, _ = place(x, size, fill, centre=geometry == "pad")
    out[key] = y
  if geometry == "resize" and role == "train":
    box = (0, 0, height, width)
  else:
    top, left = ((height - h) // 2, (width - w) // 2) if geometry == "pad" else (0, 0)
    box = (top, left, h, w)
  out["box"] = np.asarray(box, np.int32)
  return out
