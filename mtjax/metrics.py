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

import dataclasses
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
    "SALIENCY_IGNORE",
    "SALIENCY_MIOU_THRESHOLD",
    "SALIENCY_PROTOCOLS",
    "STL_REFERENCES",
    "SaliencyProtocol",
    "delta_m",
    "delta_m_as_released",
    "depth_state",
    "finalize",
    "finalize_all",
    "finalize_parts",
    "finalize_saliency",
    "finalize_semseg_as_released",
    "merge",
    "normals_state",
    "parts_state",
    "saliency_state",
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


def _check_same_shape(name_a, a, name_b, b, last_dim=None):
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
  _check_same_shape("pred_ids", pred_ids, "labels", labels)
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
  _check_same_shape("pred", pred, "gt", gt, last_dim=1)
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
  _check_same_shape("pred", pred, "gt", gt, last_dim=3)
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
# PASCAL-Context multi-task metrics: saliency (a binary map) and human parts.
# Reference: docs/metrics.md. Source commits read:
# MTI = SimonVandenhende/Multi-Task-Learning-PyTorch @ed3d9ac, MTCP = Klodivio355/MT-CP @08c068e,
# ASTMT = facebookresearch/astmt @4d5d9bf, ATRC = brdav/atrc @76d8055,
# INV = prismformore/Multi-Task-Transformer @870c6be.

# Saliency gt value of an ignored pixel (also what padded examples get).
SALIENCY_IGNORE = 255.0

# The pooled protocols' "miou" binarises the map at prob >= this (see ``finalize_saliency``).
SALIENCY_MIOU_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class SaliencyProtocol:
  """One published way to compute saliency maxF (and the mIoU reported beside it).

  Attributes:
    thresholds: increasing thresholds, as the reference code compares them (Python floats).
    strict: True: a pixel is predicted salient iff score > t (NumPy in ASTMT / MTI-Net / MT-CP);
      False: iff score >= t (PyTorch in ATRC / InvPT).
    beta_squared: β² of F = (1 + β²) P R / (β² P + R).
    per_image: True: P, R and Jaccard per image, then means over images (ASTMT / MTI-Net / MT-CP);
      False: true / predicted / actual positives pooled over the split's valid pixels (ATRC, InvPT).
    double_sigmoid: True: the thresholds apply to sigmoid(prob), not prob (InvPT's meter).
    reference: the code this protocol reproduces (file:line at the commits named above).
  """

  thresholds: tuple
  strict: bool
  beta_squared: float
  per_image: bool
  double_sigmoid: bool
  reference: str


# torch.arange(0.05, 1, 0.05) is float32: 19 thresholds 0.05 ... 0.95. (torch 2.x returns
# 0.59999996 rather than float32(0.6) for the 12th; that one-ulp difference moves only a pixel whose
# probability is exactly 0.59999996.)
_POOLED_THRESHOLDS = tuple(float(t) for t in np.arange(0.05, 1, 0.05).astype(np.float32))

SALIENCY_PROTOCOLS = {
    # The field's standard since ATRC (our default).
    "pooled": SaliencyProtocol(
        thresholds=_POOLED_THRESHOLDS,
        strict=False,
        beta_squared=0.3,
        per_image=False,
        double_sigmoid=False,
        reference=(
            "ATRC src/data/metrics.py:161-172 (β² 0.3, thresholds arange(0.05, 1, 0.05)), "
            ":204-216 (prob >= t, pixels with gt != 255 pooled), :222-231 (F, NaN -> 0), "
            "src/data/pl_data.py:93"
        ),
    ),
    # ASTMT's offline evaluator, kept by MTI-Net and MT-CP.
    "per_image": SaliencyProtocol(
        thresholds=tuple(np.linspace(0.2, 0.9, 15).tolist()),
        strict=True,
        beta_squared=1.0,
        per_image=True,
        double_sigmoid=False,
        reference=(
            "MTI evaluation/eval_sal.py:47 (pred > t), :52-61 (means over images, "
            "F = 2PR/(P+R+1e-12), max over t), :152 (linspace(0.2, 0.9, 15)); evaluation/jaccard.py"
            ":23-24 (empty gt and pred -> 1), :45-46 (1e-12); MTCP same files and lines; ASTMT "
            "fblib/evaluation/eval_sal.py:42-58"
        ),
    ),
    # InvPT / TaskPrompter / DiffusionMTL: ATRC's pooled F on sigmoid(prob).
    "invpt": SaliencyProtocol(
        thresholds=_POOLED_THRESHOLDS,
        strict=False,
        beta_squared=0.3,
        per_image=False,
        double_sigmoid=True,
        reference=(
            "INV InvPT/utils/utils.py:39 (softmax prob * 255), InvPT/evaluation/eval_sal.py:30 "
            "(/ 255), :43 (sigmoid again), :52 (>= t), :67-76 (F, NaN -> 0), "
            "InvPT/evaluation/evaluate_utils.py:55 (step 0.05, β² 0.3); TaskPrompter/utils/utils.py"
            ":51, TaskPrompter/evaluation/eval_sal.py:43,52; DMTL (prismformore/DiffusionMTL "
            "@65b84e7) utils/utils.py:80, evaluation/eval_sal.py:41,54,63, "
            "evaluation/evaluate_utils.py:57"
        ),
    ),
}

_SALIENCY_POOLED_KEYS = frozenset(
    {
        "true_positives",
        "predicted_positives",
        "actual_positives",
        "valid_count",
        "half_true_positives",
        "half_predicted_positives",
    }
)
_SALIENCY_PER_IMAGE_KEYS = frozenset(
    {"precision_sum", "recall_sum", "jaccard_sum", "image_count"}
)
_SALIENCY_PER_THRESHOLD_KEYS = frozenset(
    {"true_positives", "predicted_positives", "precision_sum", "recall_sum", "jaccard_sum"}
)
_PARTS_KEYS = frozenset({"confusion", "image_count"})


def _saliency_protocol(protocol):
  if protocol not in SALIENCY_PROTOCOLS:
    raise ValueError(
        f"saliency protocol={protocol!r}: expected one of {sorted(SALIENCY_PROTOCOLS)}."
    )
  return SALIENCY_PROTOCOLS[protocol]


def _float32_thresholds(spec):
  """Float32 thresholds t32 with (p > t) == (p > t32) (strict) or (p >= t) == (p >= t32), for
  every float32 p, where t is the float64 threshold (NumPy compares a float32 map with float64
  thresholds in float64)."""
  t64 = np.asarray(spec.thresholds, dtype=np.float64)
  t32 = t64.astype(np.float32)
  if spec.strict:  # round down: p > t64 <=> p > largest float32 <= t64
    t32 = np.where(t32 > t64, np.nextafter(t32, np.float32(-np.inf)), t32)
  else:  # round up: p >= t64 <=> p >= smallest float32 >= t64
    t32 = np.where(t32 < t64, np.nextafter(t32, np.float32(np.inf)), t32)
  return t32.astype(np.float32)


def _passing_counts(hist):
  """hist [..., T + 1] of threshold levels -> [..., T]: entry j counts the levels > j."""
  return jnp.cumsum(hist[..., ::-1], axis=-1)[..., ::-1][..., 1:]


@functools.partial(jax.jit, static_argnames="protocol")
def saliency_state(prob, gt, *, protocol="pooled"):
  """Additive saliency counts (or per-image sums) of one batch, per threshold of ``protocol``.

  A pixel is valid iff gt != 255 (``SALIENCY_IGNORE``); it is salient in gt iff gt >= 0.5 (gt is
  0 or 1; ATRC / InvPT cast it to long, MTI to bool: the same on {0, 1}). It is predicted salient at
  threshold t iff score > t (``strict``) or score >= t, with score = prob, or sigmoid(prob) for
  "invpt". Thresholds are compared in float32 exactly as the reference's float64 (NumPy) or
  float32 (PyTorch) comparison decides; a NaN probability is never salient. Images are the leading
  dimensions: [H, W, 1] is one image.

  Protocols (``SALIENCY_PROTOCOLS``; see each ``reference`` for file:line):
    "pooled": ATRC (the field's standard; default): 19 thresholds 0.05 ... 0.95, counts pooled over
      the valid pixels of the split, β² = 0.3.
    "invpt": InvPT / TaskPrompter / DiffusionMTL: as "pooled", but thresholding sigmoid(prob) (their
      meter re-applies a sigmoid to the probability), so every t <= 0.5 is all-positive and every
      t >= 0.75 all-negative.
    "per_image": ASTMT / MTI-Net / MT-CP: 15 thresholds linspace(0.2, 0.9, 15), per image
      P = tp / (tp + fp + 1e-12), R = tp / (tp + fn + 1e-12), Jaccard = tp / (tp + fp + fn) (1 when
      gt and prediction are both empty), summed over the images with >= 1 valid pixel. Their gt has
      no ignore pixels and they pass no void mask; here a 255 pixel is excluded from every count
      (as their ``jaccard`` / ``precision_recall`` would with ``void_pixels``), and an image whose
      gt is all 255 (e.g. a padded example) is not counted. Their prediction is a uint8 png of
      sigmoid * 255 resized to the original size; pass prob already quantised to reproduce that.

  Args:
    prob: float [..., H, W, 1] salient probability in [0, 1] (the sigmoid of the head).
    gt: float (or int) [..., H, W, 1] ground truth: 0, 1, or 255 = ignore.
    protocol: a key of ``SALIENCY_PROTOCOLS`` (static under jit).

  Returns:
    "pooled" / "invpt": {"true_positives", "predicted_positives": int32 [T] (valid pixels predicted
      salient and salient in gt / predicted salient, per threshold), "actual_positives": int32 []
      (valid pixels salient in gt), "valid_count": int32 [] (valid pixels), "half_true_positives",
      "half_predicted_positives": int32 [] (the same two counts for prob >= 0.5, for the mIoU)}.
    "per_image": {"precision_sum", "recall_sum", "jaccard_sum": float32 [T] (sums over counted
      images of the per-image P, R, Jaccard, unitless), "image_count": int32 [] (counted images)}.
    T = len(SALIENCY_PROTOCOLS[protocol].thresholds). Values are not checked (traced under jit).

  Raises:
    ValueError: an unknown protocol; prob not floating or gt not real numeric; shapes differ, have
      fewer than 3 dimensions, or a trailing dimension other than 1.

  Reference: docs/metrics.md (saliency maxF).
  """
  spec = _saliency_protocol(protocol)
  prob, gt = jnp.asarray(prob), jnp.asarray(gt)
  if not jnp.issubdtype(prob.dtype, jnp.floating):
    raise ValueError(f"prob dtype {prob.dtype}: expected a floating dtype of probabilities.")
  if not (jnp.issubdtype(gt.dtype, jnp.floating) or jnp.issubdtype(gt.dtype, jnp.integer)):
    raise ValueError(f"gt dtype {gt.dtype}: expected a float (or integer) dtype of 0 / 1 / 255.")
  _check_same_shape("prob", prob, "gt", gt, last_dim=1)
  if prob.ndim < 3:
    raise ValueError(f"prob/gt shape {prob.shape}: expected [..., H, W, 1].")
  num_images = int(np.prod(prob.shape[:-3], dtype=np.int64))
  p = prob.astype(jnp.float32).reshape(num_images, -1)
  g = gt.astype(jnp.float32).reshape(num_images, -1)
  valid = g != SALIENCY_IGNORE
  positive = valid & (g >= 0.5)

  score = jax.nn.sigmoid(p) if spec.double_sigmoid else p
  thresholds = jnp.asarray(_float32_thresholds(spec))
  num_thresholds = thresholds.shape[0]
  # level = number of thresholds the pixel passes: predicted salient at threshold j iff level > j.
  level = jnp.searchsorted(
      thresholds, score, side="left" if spec.strict else "right", method="compare_all"
  )
  level = jnp.where(jnp.isnan(score), 0, level).astype(jnp.int32)

  if spec.per_image:
    segment = jnp.arange(num_images, dtype=jnp.int32)[:, None] * (num_thresholds + 1) + level

    def per_image_passing(mask):
      hist = jax.ops.segment_sum(
          mask.reshape(-1).astype(jnp.int32),
          segment.reshape(-1),
          num_segments=num_images * (num_thresholds + 1),
      )
      return _passing_counts(hist.reshape(num_images, num_thresholds + 1)).astype(jnp.float32)

    predicted = per_image_passing(valid)  # [N, T]
    tp = per_image_passing(positive)
    actual = jnp.sum(positive, axis=1).astype(jnp.float32)[:, None]
    union = predicted + actual - tp
    counted = jnp.any(valid, axis=1)[:, None]

    def total(x):
      return jnp.sum(jnp.where(counted, x, 0.0), axis=0)

    return {
        "precision_sum": total(tp / (predicted + 1e-12)),
        "recall_sum": total(tp / (actual + 1e-12)),
        "jaccard_sum": total(jnp.where(union > 0, tp / jnp.maximum(union, 1.0), 1.0)),
        "image_count": jnp.sum(counted, dtype=jnp.int32),
    }

  def passing(mask):
    hist = jax.ops.segment_sum(
        mask.reshape(-1).astype(jnp.int32), level.reshape(-1), num_segments=num_thresholds + 1
    )
    return _passing_counts(hist)

  half = valid & (p >= SALIENCY_MIOU_THRESHOLD)
  return {
      "true_positives": passing(positive),
      "predicted_positives": passing(valid),
      "actual_positives": jnp.sum(positive, dtype=jnp.int32),
      "valid_count": jnp.sum(valid, dtype=jnp.int32),
      "half_true_positives": jnp.sum(half & positive, dtype=jnp.int32),
      "half_predicted_positives": jnp.sum(half, dtype=jnp.int32),
  }


def finalize_saliency(state, protocol="pooled"):
  """maxF and mIoU (percent) of a (merged) ``saliency_state`` of the same protocol.

  "pooled" / "invpt" (ATRC / InvPT): per threshold P = tp / predicted, R = tp / actual,
  F = (1 + β²) P R / (β² P + R), NaN -> 0 (so F = 0 where nothing is predicted or nothing is
  correct); maxF = max over thresholds. ATRC's and InvPT's meters report maxF only, no saliency
  mIoU; "miou" here is the mean of the two classes' pooled IoUs (background, salient) of the map
  binarised at prob >= 0.5 (for "invpt" too: on prob, not on its doubly squashed score), each
  IoU = tp / max(tp + fp + fn, 1e-8) over the valid pixels (an absent class counts 0, the semseg
  rule of MTI / InvPT).
  "per_image" (ASTMT / MTI-Net / MT-CP): P̄, R̄ = means over images; F = (1 + β²) P̄ R̄ /
  (β² P̄ + R̄ + 1e-12) with β² = 1; maxF = max over thresholds; "miou" = max over thresholds of
  the mean per-image Jaccard of the salient class (their "mIoU", MTI evaluation/eval_sal.py:52,60).

  Args:
    state: a ``saliency_state`` of ``protocol`` (possibly merged), NumPy or JAX arrays; the math
      runs in float64 NumPy on host.
    protocol: a key of ``SALIENCY_PROTOCOLS``.

  Returns:
    {"maxF": float %, "miou": float %}, or {} when the state has no valid pixel (pooled) or no
    counted image (per_image).

  Raises:
    ValueError: an unknown protocol, keys that are not this protocol's state, or per-threshold
      arrays whose shape is not [len(thresholds)].

  Reference: docs/metrics.md (saliency maxF); the
  protocol's ``reference``.
  """
  spec = _saliency_protocol(protocol)
  expected = _SALIENCY_PER_IMAGE_KEYS if spec.per_image else _SALIENCY_POOLED_KEYS
  if frozenset(state) != expected:
    raise ValueError(
        f"saliency state keys {sorted(state)}: expected {sorted(expected)} for protocol "
        f"{protocol!r}."
    )
  s = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
  num_thresholds = len(spec.thresholds)
  for k, v in s.items():
    expected_shape = (num_thresholds,) if k in _SALIENCY_PER_THRESHOLD_KEYS else ()
    if v.shape != expected_shape:
      raise ValueError(
          f"saliency state {k!r} shape {v.shape}: expected {expected_shape} for protocol "
          f"{protocol!r}."
      )
  b2 = spec.beta_squared
  if spec.per_image:
    n = s["image_count"]
    if n == 0:
      return {}
    precision, recall = s["precision_sum"] / n, s["recall_sum"] / n
    f = (1 + b2) * precision * recall / (b2 * precision + recall + 1e-12)
    return {"maxF": float(np.max(f) * 100), "miou": float(np.max(s["jaccard_sum"] / n) * 100)}
  valid = s["valid_count"]
  if valid == 0:
    return {}
  tp, actual = s["true_positives"], s["actual_positives"]
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = tp / s["predicted_positives"]
    recall = tp / actual
    f = (1 + b2) * precision * recall / (b2 * precision + recall)
  f = np.where(np.isnan(f), 0.0, f)
  half_tp, half_pred = s["half_true_positives"], s["half_predicted_positives"]
  iou_salient = half_tp / max(half_pred + actual - half_tp, 1e-8)
  true_negatives = valid - half_pred - actual + half_tp
  iou_background = true_negatives / max(valid - half_tp, 1e-8)
  return {
      "maxF": float(np.max(f) * 100),
      "miou": float((iou_background + iou_salient) / 2 * 100),
  }


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
  _check_same_shape("pred_ids", pred_ids, "labels", labels)
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
