"""Streaming dense-prediction metrics: additive states on device, final numbers on host.

Reference: docs/metrics.md (every definition, and the protocols of each paper).

A metric *state* is a flat dict of arrays (sums, counts, a confusion matrix, a histogram) computed per
batch by ``segmentation_state`` / ``depth_state`` / ``normals_state`` (each wrapped in ``jax.jit`` with
static ``num_classes`` / ``num_bins``: fast when called eagerly, inlined inside a caller's jit). States are
additive: ``merge`` sums them elementwise, so the state of a whole split is the merge of its batches and
every metric is a ratio of split-level sums, never a mean of per-batch means. ``finalize`` turns one
task's state into Python floats (float64 NumPy on host); ``finalize_all`` does it for a dict
``{task_name: state}``. Counts are int32 (exact; a float32 count stops being exact past 2**24 pixels),
sums are float32; merge on host in int64/float64 when a split may exceed 2**31 - 1 pixels.

Invalid pixels (semseg label outside [0, C), depth gt <= 0, all-zero normal gt) contribute nothing.
Callers mask padded or unlabelled examples by setting their gt to the invalid value. A task whose state
has no valid pixel is *absent*: ``finalize`` returns ``{}`` for it (never 0, never NaN).
"""

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AS_RELEASED",
    "HIGHER_IS_BETTER",
    "MIN_DEPTH_PREDICTION",
    "MTPSL_CITYSCAPES_STL_REFERENCES",
    "MTPSL_NYUV2_STL_REFERENCES",
    "NORMAL_HISTOGRAM_BINS",
    "RDC_RELEASED_STL_REFERENCES",
    "STL_REFERENCES",
    "check_same_shape",
    "delta_m",
    "delta_m_as_released",
    "depth_state",
    "finalize",
    "finalize_all",
    "finalize_parts",
    "finalize_semseg_as_released",
    "merge",
    "normals_state",
    "parts_state",
    "segmentation_state",
]


# Direction of every metric ``finalize`` reports: True = higher is better (s_t = +1 in Δm).
HIGHER_IS_BETTER = {
    "miou": True,
    "pixel_acc": True,
    "delta1": True,
    "within_11_25": True,
    "within_22_5": True,
    "within_30": True,
    "abs_err": False,
    "rel_err": False,
    "rmse": False,
    "mean": False,
    "median": False,
    "maxF": True,  # saliency (``finalize_saliency``)
    "odsF": True,  # edge detection (another module)
    "oisF": True,
    "ap": True,
}

# MTPSL single-task (STL) SegNet results on NYUv2 per label setting: mIoU %, depth abs_err m, normal
# mean angle °. Source: docs/metrics.md (Δm references).
MTPSL_NYUV2_STL_REFERENCES = {
    "full": {
        "semseg": {"miou": 37.4474},
        "depth": {"abs_err": 0.607902},
        "normal": {"mean": 25.938105},
    },
    "onelabel": {
        "semseg": {"miou": 26.1113},
        "depth": {"abs_err": 0.771502},
        "normal": {"mean": 30.073763},
    },
    "randomlabels": {
        "semseg": {"miou": 28.7153},
        "depth": {"abs_err": 0.754012},
        "normal": {"mean": 28.946388},
    },
}

# Depth predictions are clamped to this before the depth metrics (MTPSL's DepthMeter), metres.
MIN_DEPTH_PREDICTION = 1e-9

# MTPSL's Cityscapes STL baselines (SegNet, 7 classes, 128x256), mIoU % and abs_err in the stored
# disparity units: MTPSL paper Table 3 / docs/metrics.md.
MTPSL_CITYSCAPES_STL_REFERENCES = {
    "full": {"semseg": {"miou": 74.07}, "depth": {"abs_err": 0.0124}},
    "onelabel": {"semseg": {"miou": 70.04}, "depth": {"abs_err": 0.0140}},
}

# config.dataset.name -> label setting -> STL references (Δm's "auto"). NYUD-MT and PASCAL-Context
# have none: MT-CP and MTI-Net read theirs from per-run files that are not released, and the
# papers of the partial-label setting on PASCAL state no STL table we have verified.
STL_REFERENCES = {
    "nyuv2": MTPSL_NYUV2_STL_REFERENCES,
    "cityscapes": MTPSL_CITYSCAPES_STL_REFERENCES,
}

# Default normal-angle histogram: 18000 bins of 0.01° over [0, 180].
NORMAL_HISTOGRAM_BINS = 18000

_SEGMENTATION_KEYS = frozenset({"confusion"})
_DEPTH_KEYS = frozenset({"abs_sum", "rel_sum", "sq_sum", "delta1_count", "count"})
_NORMALS_KEYS = frozenset(
    {"angle_sum", "angle_sq_sum", "within_11_25", "within_22_5", "within_30", "count", "histogram"}
)
_PARTS_KEYS = frozenset({"confusion", "image_count"})


def check_same_shape(name_a, a, name_b, b, last_dim=None):
  """Checks a prediction and its gt for one metric state (any shapes, any array type).

  Raises:
    ValueError: `a.shape != b.shape` (naming both), or `last_dim` is given and the trailing
      dimension differs from it (e.g. 1 for depth / saliency maps, 3 for normals).
  """
  if a.shape != b.shape:
    raise ValueError(
        f"{name_a} shape {a.shape} != {name_b} shape {b.shape}; expected equal shapes."
    )
  if last_dim is not None and (a.ndim == 0 or a.shape[-1] != last_dim):
    raise ValueError(
        f"{name_a}/{name_b} shape {a.shape}: expected a trailing dimension of {last_dim}."
    )


@functools.partial(jax.jit, static_argnames="num_classes")
def segmentation_state(pred_ids, labels, num_classes):
  """Confusion matrix of one batch of semantic segmentation.

  Args:
    pred_ids: int [..., H, W] predicted class ids (e.g. argmax of the logits).
    labels: int [..., H, W] ground-truth ids; pixels outside [0, num_classes) (e.g. -1) are ignored.
    num_classes: Python int C >= 1 (static under jit).

  Returns:
    {"confusion": int32 [C, C]}, rows = ground truth, cols = prediction, counting pixels with a valid
    label and a prediction in [0, C) (argmax ids always are).

  Raises:
    ValueError: shapes differ, a non-integer dtype, or num_classes < 1.

  Reference: docs/metrics.md (confusion matrix).
  """
  pred_ids, labels = jnp.asarray(pred_ids), jnp.asarray(labels)
  check_same_shape("pred_ids", pred_ids, "labels", labels)
  for name, x in (("pred_ids", pred_ids), ("labels", labels)):
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise ValueError(f"{name} dtype {x.dtype}: expected an integer dtype of class ids.")
  if num_classes < 1:
    raise ValueError(f"num_classes = {num_classes}: expected an int >= 1.")
  gt = labels.reshape(-1).astype(jnp.int32)
  pred = pred_ids.reshape(-1).astype(jnp.int32)
  valid = (gt >= 0) & (gt < num_classes) & (pred >= 0) & (pred < num_classes)
  cell = jnp.where(valid, gt * num_classes + pred, 0)
  counts = jax.ops.segment_sum(
      valid.astype(jnp.int32), cell, num_segments=num_classes * num_classes
  )
  return {"confusion": counts.reshape(num_classes, num_classes)}


@jax.jit
def depth_state(pred, gt):
  """Depth error sums of one batch.

  Args:
    pred: float [..., H, W, 1] predicted depth in metres.
    gt: float [..., H, W, 1] ground-truth depth in metres; pixels with gt <= 0 are invalid.

  Predictions are clamped to p = max(pred, 1e-9) first, as MTPSL's ``DepthMeter.update``
  (``utils/evaluation.py``: "only positive depth values are possible"), so a negative prediction
  costs |1e-9 - g|, not |pred - g|; this matters early in training, when the linear depth head
  still predicts negative depths.

  Returns:
    {"abs_sum": Σ|p - g|, "rel_sum": Σ|p - g| / g, "sq_sum": Σ(p - g)², all float32 over valid pixels
    (metres, unitless, m²); "delta1_count": int32 #(max(p/g, g/p) < 1.25); "count": int32 N_valid}.

  Raises:
    ValueError: shapes differ or the trailing dimension is not 1.

  Reference: docs/metrics.md (depth).
  """
  pred, gt = jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32)
  check_same_shape("pred", pred, "gt", gt, last_dim=1)
  valid = gt > 0
  g = jnp.where(valid, gt, 1.0)
  p = jnp.where(valid, jnp.maximum(pred, MIN_DEPTH_PREDICTION), 1.0)
  err = jnp.abs(p - g)
  within = jnp.maximum(p / g, g / p) < 1.25
  return {
      "abs_sum": jnp.sum(err),  # invalid pixels have p = g = 1 and contribute 0
      "rel_sum": jnp.sum(err / g),
      "sq_sum": jnp.sum(err * err),
      "delta1_count": jnp.sum(valid & within, dtype=jnp.int32),
      "count": jnp.sum(valid, dtype=jnp.int32),
  }


@functools.partial(jax.jit, static_argnames=("num_bins", "normalize"))
def normals_state(pred, gt, *, num_bins=NORMAL_HISTOGRAM_BINS, normalize=True):
  """Angular-error sums and an angle histogram of one batch of surface normals.

  Per valid pixel, angle = degrees(arccos(clip(<p̂, ĝ>, -1, 1))) with p̂, ĝ L2-normalised (norm floored
  at 1e-12, so a zero prediction is at 90°).

  With ``normalize=False``, angle = degrees(arccos(clip(<p, g>, -1, 1))) of the vectors as given:
  the metric of RDC's released code (HereNowL/Region-aware-Distribution-Contrast a6fa360,
  ``utils/evaluation.py`` ``NormalsMeter.update``, line 45, on the raw head output). It is not an
  angle: a prediction longer than 1 scores 0° wherever |p| cos θ ≥ 1. Reported beside the
  correct metric, never instead (``eval/normal_as_released/*``).

  Args:
    pred: float [..., H, W, 3] predicted normals (any length).
    gt: float [..., H, W, 3] ground-truth normals; all-zero vectors are invalid.
    num_bins: Python int >= 1 (static under jit): histogram bins of width 180 / num_bins degrees over
      [0, 180]. ``finalize`` locates the median in its bin and interpolates linearly there, so the
      reported median is within one bin width of the exact median of the pooled angles: <= 0.01° with
      the default 18000 bins.
    normalize: L2-normalise both vectors (the angle); False: RDC's released metric (above).

  Returns:
    {"angle_sum": Σ angle (°), "angle_sq_sum": Σ angle² (°²), both float32; int32 counts
    "within_11_25", "within_22_5", "within_30" (#angle < threshold), "count" (N_valid); "histogram":
    int32 [num_bins] per-bin pixel counts}.

  Raises:
    ValueError: shapes differ, the trailing dimension is not 3, or num_bins < 1.

  Reference: docs/metrics.md (normals).
  """
  pred, gt = jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32)
  check_same_shape("pred", pred, "gt", gt, last_dim=3)
  if num_bins < 1:
    raise ValueError(f"num_bins = {num_bins}: expected an int >= 1.")
  valid = jnp.any(gt != 0, axis=-1).reshape(-1)

  def unit(v):
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

  if normalize:
    pred, gt = unit(pred), unit(gt)
  cos = jnp.sum(pred * gt, axis=-1).reshape(-1)
  angle = jnp.where(valid, jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))), 0.0)
  bins = jnp.clip(jnp.floor(angle * (num_bins / 180.0)).astype(jnp.int32), 0, num_bins - 1)

  def count(mask):
    return jnp.sum(valid & mask, dtype=jnp.int32)

  return {
      "angle_sum": jnp.sum(angle),
      "angle_sq_sum": jnp.sum(angle * angle),
      "within_11_25": count(angle < 11.25),
      "within_22_5": count(angle < 22.5),
      "within_30": count(angle < 30.0),
      "count": count(True),
      "histogram": jax.ops.segment_sum(valid.astype(jnp.int32), bins, num_segments=num_bins),
  }


def merge(a, b):
  """Elementwise sum of two metric states of the same structure (NumPy or JAX arrays).

  Works on one task's state or on nested dicts such as {task_name: state}; jit-able.

  Returns:
    A state of the same structure; dtypes follow NumPy/JAX promotion (to accumulate in float64 on
    host, merge a float64 NumPy accumulator with ``jax.device_get(state)``).

  Raises:
    ValueError: the two structures (dict keys) differ.

  Reference: docs/metrics.md (accumulate over the whole split).
  """
  ta, tb = jax.tree.structure(a), jax.tree.structure(b)
  if ta != tb:
    raise ValueError(
        f"cannot merge states of different structure: {ta} vs {tb}; "
        "expected the same keys in both."
    )
  return jax.tree.map(operator.add, a, b)


def _median_from_histogram(hist, n):
  """Median of n pooled values from their [0, 180]° histogram, within one bin width of exact."""
  width = 180.0 / hist.size
  cdf = np.cumsum(hist)
  ranks = np.array([np.floor((n + 1) / 2), np.ceil((n + 1) / 2)])  # 1-based middle order statistics
  k = np.searchsorted(cdf, ranks)  # bin holding each rank
  below = cdf[k] - hist[k]
  return float(np.mean((k + (ranks - below - 0.5) / hist[k]) * width))


def finalize(state):
  """Final metrics of ONE task's state (its kind is detected from its keys).

  Args:
    state: a state from ``segmentation_state``, ``depth_state`` or ``normals_state`` (possibly merged),
      NumPy or JAX arrays; the math runs in float64 NumPy on host.

  Returns:
    dict of Python floats, or {} when the state has no valid pixel (task absent):
      segmentation: "miou" (%, mean IoU over the classes present in gt OR prediction — unlike MTPSL's
        plain mean, a class absent from both is excluded rather than NaN), "pixel_acc" (%);
      depth: "abs_err" (m), "rel_err" (unitless), "rmse" (m), "delta1" (%);
      normals: "mean", "median", "rmse" (degrees), "within_11_25", "within_22_5", "within_30" (%).
      IoU_c = diag / (row + col - diag); rmse = sqrt(Σ sq / N); the normal median is interpolated
      linearly inside its histogram bin (see ``normals_state``).

  Raises:
    ValueError: the keys match no state kind, the confusion matrix is not square, or the normal
      histogram total differs from "count".

  Reference: docs/metrics.md.
  """
  keys = frozenset(state)
  s = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
  if keys == _SEGMENTATION_KEYS:
    conf = s["confusion"]
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
      raise ValueError(f"confusion shape {conf.shape}: expected a square [C, C] matrix.")
    total = conf.sum()
    if total == 0:
      return {}
    diag = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - diag
    present = union > 0
    return {
        "miou": float(np.mean(diag[present] / union[present]) * 100),
        "pixel_acc": float(diag.sum() / total * 100),
    }
  n = s.get("count")
  if keys == _DEPTH_KEYS:
    if n == 0:
      return {}
    return {
        "abs_err": float(s["abs_sum"] / n),
        "rel_err": float(s["rel_sum"] / n),
        "rmse": float(np.sqrt(s["sq_sum"] / n)),
        "delta1": float(s["delta1_count"] / n * 100),
    }
  if keys == _NORMALS_KEYS:
    if s["histogram"].sum() != n:
      raise ValueError(
          f"normal histogram total {s['histogram'].sum():.0f} != count {n:.0f}; "
          "expected a state built by normals_state and merge."
      )
    if n == 0:
      return {}
    return {
        "mean": float(s["angle_sum"] / n),
        "median": _median_from_histogram(s["histogram"], n),
        "rmse": float(np.sqrt(s["angle_sq_sum"] / n)),
        **{k: float(s[k] / n * 100) for k in ("within_11_25", "within_22_5", "within_30")},
    }
  raise ValueError(
      f"unknown metric state keys {sorted(keys)}; expected one of "
      f"{sorted(_SEGMENTATION_KEYS)}, {sorted(_DEPTH_KEYS)}, {sorted(_NORMALS_KEYS)}."
  )


def finalize_all(states):
  """``finalize`` for each task: {task_name: state} -> {task_name: {metric: float}}.

  An absent task (no valid pixel) maps to {}. Raises ValueError as ``finalize`` does.
  Reference: docs/metrics.md.
  """
  return {task: finalize(state) for task, state in states.items()}


def delta_m(results, references, directions=HIGHER_IS_BETTER):
  """Relative multi-task gain Δm over single-task references, in percent.

  Δm = (1/T) Σ_t s_t (M_t − M_t^STL) / M_t^STL × 100 over the T (task, metric) entries of
  ``references`` that are also in ``results``; s_t = +1 if ``directions[metric]`` (higher is better)
  else -1.

  Args:
    results: {task: {metric: float}}, e.g. the output of ``finalize_all``.
    references: {task: {metric: float}}, e.g. ``MTPSL_NYUV2_STL_REFERENCES["full"]``.
    directions: {metric: bool}, default ``HIGHER_IS_BETTER``.

  Returns:
    Python float Δm (%), or None when no reference entry is present in ``results``.

  Raises:
    ValueError: a used metric has no direction, or its reference value is 0.

  Reference: docs/metrics.md (Δm).
  """
  gains = []
  for task, ref_metrics in references.items():
    for metric, ref in ref_metrics.items():
      if metric not in results.get(task, {}):
        continue
      if metric not in directions:
        raise ValueError(
            f"metric {metric!r} of task {task!r} has no direction; expected one of "
            f"{sorted(directions)}."
        )
      if ref == 0:
        raise ValueError(f"reference {task}/{metric} is 0; expected a non-zero value.")
      sign = 1.0 if directions[metric] else -1.0
      gains.append(sign * (results[task][metric] - ref) / ref)
  return float(np.mean(gains) * 100) if gains else None


# ------------------------------------------------------------------------------------------------
# Metrics as RDC's released code computes them (HereNowL/Region-aware-Distribution-Contrast a6fa360),
# reported beside the correct ones, never instead.

# The released script's hard-coded single-task numbers (``nyu_mtl_region_cons_gaussian.py`` lines
# 94-98): the same values as MTPSL's NYUv2 STL table above, keyed by ``--ssl-type``.
RDC_RELEASED_STL_REFERENCES = MTPSL_NYUV2_STL_REFERENCES

# The suffix of the as-released entries of an evaluation ({"normal_as_released": {...}}).
AS_RELEASED = "_as_released"


def finalize_semseg_as_released(state):
  """mIoU and pixel accuracy as RDC's released code computes them from a confusion matrix.

  Args:
    state: a ``segmentation_state`` ({"confusion": [C, C]}), merged over the split.

  Returns:
    {"miou": mean over all C classes of diag / (row + col − diag + 1e-8) × 100, a class absent
    from both ground truth and prediction counting 0 (released ``utils/evaluation.py``
    ``ConfMatrix.get_metrics``, lines 27-32), "pixel_acc": %}; {} when no pixel is valid.
  """
  conf = np.asarray(state["confusion"], np.float64)
  total = conf.sum()
  if total == 0:
    return {}
  diag = np.diag(conf)
  iou = diag / (conf.sum(0) + conf.sum(1) - diag + 1e-8)
  return {"miou": float(np.mean(iou) * 100), "pixel_acc": float(diag.sum() / total * 100)}


def delta_m_as_released(results, references, directions=HIGHER_IS_BETTER):
  """Δm as RDC's released script scores its epochs (``nyu_mtl_region_cons_gaussian.py`` lines
  377-381): ``delta_m`` of the as-released mIoU and normal mean (the tasks'
  ``released_finalize``) with
  the depth abs_err, against ``references`` (``RDC_RELEASED_STL_REFERENCES[setting]``).

  Args:
    results: an evaluation with the ``*_as_released`` entries ({task: {metric: float}}).
    references, directions: as ``delta_m``.

  Returns:
    Python float Δm (%), or None as ``delta_m``.
  """
  swapped = dict(results)
  for task in ("semseg", "normal"):
    if results.get(task + AS_RELEASED):
      swapped[task] = results[task + AS_RELEASED]
  return delta_m(swapped, references, directions)


# ------------------------------------------------------------------------------------------------
# PASCAL-Context multi-task metrics: human parts (saliency: mtjax/saliency_metrics.py).
# Reference: docs/metrics.md. Source commits read:
# MTI = SimonVandenhende/Multi-Task-Learning-PyTorch @ed3d9ac, MTCP = Klodivio355/MT-CP @08c068e,
# ASTMT = facebookresearch/astmt @4d5d9bf, ATRC = brdav/atrc @76d8055,
# INV = prismformore/Multi-Task-Transformer @870c6be.

@functools.partial(jax.jit, static_argnames="num_classes")
def parts_state(pred_ids, labels, num_classes):
  """Confusion matrix of one batch of human parts, over the images the PASCAL evaluators count.

  An image counts iff at least one of its pixels has a part label in [1, num_classes), i.e. it is
  skipped when its gt is all background, all ignore, or background and ignore only. MTI / MT-CP's
  evaluator skips an image whose gt has one single value, 0 or 255 (evaluation/eval_human_parts.py
  :38-39; their raw gt has no 255, so this is the same rule there); InvPT's loader turns gt made of
  0 and 255 only into all 255 (InvPT/data/transforms.py:291-295), so its meter counts the same
  pixels. Within counted images, pixels with a label in [0, num_classes) and a prediction in
  [0, num_classes) (argmax ids always are) are counted, as MTI's ``valid = gt != 255`` (:51).

  Args:
    pred_ids: int [..., H, W] predicted part ids (argmax of the logits); [H, W] is one image.
    labels: int [..., H, W] gt ids: 0 background, 1 ... num_classes - 1 parts; pixels outside
      [0, num_classes) (mtjax's -1) are ignored.
    num_classes: Python int C >= 2 incl. background (7 on PASCAL-Context; static under jit).

  Returns:
    {"confusion": int32 [C, C] (rows = gt, cols = prediction, counted images only),
    "image_count": int32 [] (images counted)}.

  Raises:
    ValueError: shapes differ or have fewer than 2 dimensions, a non-integer dtype, or
      num_classes < 2.

  Reference: docs/metrics.md (human parts mIoU).
  """
  pred_ids, labels = jnp.asarray(pred_ids), jnp.asarray(labels)
  check_same_shape("pred_ids", pred_ids, "labels", labels)
  for name, x in (("pred_ids", pred_ids), ("labels", labels)):
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise ValueError(f"{name} dtype {x.dtype}: expected an integer dtype of part ids.")
  if labels.ndim < 2:
    raise ValueError(f"pred_ids/labels shape {labels.shape}: expected [..., H, W].")
  if num_classes < 2:
    raise ValueError(f"num_classes = {num_classes}: expected an int >= 2 (background + parts).")
  num_images = int(np.prod(labels.shape[:-2], dtype=np.int64))
  gt = labels.reshape(num_images, -1).astype(jnp.int32)
  pred = pred_ids.reshape(num_images, -1).astype(jnp.int32)
  counted = jnp.any((gt >= 1) & (gt < num_classes), axis=1)
  valid = (
      counted[:, None] & (gt >= 0) & (gt < num_classes) & (pred >= 0) & (pred < num_classes)
  ).reshape(-1)
  cell = jnp.where(valid, gt.reshape(-1) * num_classes + pred.reshape(-1), 0)
  counts = jax.ops.segment_sum(
      valid.astype(jnp.int32), cell, num_segments=num_classes * num_classes
  )
  return {
      "confusion": counts.reshape(num_classes, num_classes),
      "image_count": jnp.sum(counted, dtype=jnp.int32),
  }


def finalize_parts(state):
  """Human-parts mIoU (percent) of a (merged) ``parts_state``.

  IoU_c = tp_c / max(tp_c + fp_c + fn_c, 1e-8), mIoU = mean over ALL C classes, so a class absent
  from both gt and prediction counts 0 (MTI / MT-CP evaluation/eval_human_parts.py:68,73; INV
  InvPT/evaluation/eval_human_parts.py:52,56). This differs from ``finalize``'s semseg rule, which
  leaves such a class out.

  Args:
    state: a ``parts_state`` (possibly merged), NumPy or JAX arrays; float64 NumPy on host.

  Returns:
    {"miou": float %}, or {} when no image was counted (task absent).

  Raises:
    ValueError: keys other than {"confusion", "image_count"} or a non-square confusion matrix.

  Reference: docs/metrics.md (human parts mIoU).
  """
  if frozenset(state) != _PARTS_KEYS:
    raise ValueError(f"parts state keys {sorted(state)}: expected {sorted(_PARTS_KEYS)}.")
  conf = np.asarray(state["confusion"], dtype=np.float64)
  if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
    raise ValueError(f"confusion shape {conf.shape}: expected a square [C, C] matrix.")
  if float(np.asarray(state["image_count"])) == 0:
    return {}
  tp = np.diag(conf)
  iou = tp / np.maximum(conf.sum(0) + conf.sum(1) - tp, 1e-8)
  return {"miou": float(np.mean(iou) * 100)}
