"""Saliency metrics (a binary map, PASCAL-Context's multi-task benchmark): maxF, mIoU and the
field's three ways of computing them (``SALIENCY_PROTOCOLS``), as additive states on device and
final numbers on host, like ``mtjax.metrics``.

Reference: docs/metrics.md. Source commits read:
MTI = SimonVandenhende/Multi-Task-Learning-PyTorch @ed3d9ac, MTCP = Klodivio355/MT-CP @08c068e,
ASTMT = facebookresearch/astmt @4d5d9bf, ATRC = brdav/atrc @76d8055,
INV = prismformore/Multi-Task-Transformer @870c6be.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mtjax import metrics

__all__ = [
    "SALIENCY_IGNORE",
    "SALIENCY_MIOU_THRESHOLD",
    "SALIENCY_PROTOCOLS",
    "SaliencyProtocol",
    "finalize_saliency",
    "saliency_state",
]

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
  metrics.check_same_shape("prob", prob, "gt", gt, last_dim=1)
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
