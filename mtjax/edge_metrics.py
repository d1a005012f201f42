"""Boundary detection odsF / oisF / AP by the BSDS protocol, on host (NumPy / SciPy).

Reference: docs/metrics.md, section "Metrics for the PASCAL and NYUD-MT tasks"
(edge odsF, the MTI / MT-CP variant, pyEdgeEval). Tags: [SEISM] = jponttuset/seism as set up in
prismformore/Boundary-Detection-Evaluation-Tools (BDET) for InvPT / TaskPrompter / DMTL; [MTI] =
SimonVandenhende/Multi-Task-Learning-PyTorch evaluation/eval_edge.py and
evaluation/seism/read_one_png.m (MT-CP reuses them); [BSDS] = the Berkeley segbench correspondPixels
(match.cc); [PEE] = pyEdgeEval 0.2.8.

Per image: ``mtjax.edge_counts`` (quantize, optional NMS, binarize, thin, match within the radius
as BSDS ``correspondPixels``; its docstring has each step and reference). The protocols (thresholds,
radius, preprocessing) are ``mtjax.edge_protocols``.

Over a split (``finalize_edges``, SEISM ``gather_measure.m``, ``general_ods.m``, ``general_ois.m``,
``general_ap.m``): ODS pools the counts per threshold over images, R = sum cntR / sum sumR,
P = sum cntP / sum sumP, F = 2PR / (P + R), odsF = the maximum over thresholds (no interpolation;
[PEE] interpolates 101 steps between adjacent thresholds, which gives >= this value). OIS takes each
image's best-F threshold (first on ties, MATLAB ``max``; per-image F as eval_cont.m: 0 when the
image has no gt or no prediction) and pools those counts. AP = the mean of P interpolated linearly
over R at 0, 0.01, ..., 1 where defined (``interp1``), summed and divided by 100.

Speed (how one image is evaluated fast: ``mtjax.edge_counts``), measured with
tools/benchmark_metrics.py on 654 synthetic 480 x 640 maps, mtinet_nyud, a 2-core AMD EPYC CPU:
241 s with ``num_workers=2``, 0.66 s per image in one process; pyEdgeEval's evaluation of the
same maps: ~64 s per image.

Notes:
  * Image sets: SEISM (BDET ``pr_curves_base.m``) and MTI evaluate PASCAL-Context on gt_set
    ``test_new``, 2,498 of the 5,105 val images; ASTMT and BDET's ``eval_edge_pascal.py`` save all
    5,105; NYUD is the 654 val images everywhere. Choosing the images is a dataset-split matter for
    the caller: this module evaluates whatever images it is given.
  * Arrays must be the original image size (crop any padding first): the radius uses the array's
    diagonal, and NMS suppresses the 5 px next to the array border.
  * The gt is a boundary map. SEISM builds it with ``seg2bmap`` from a label image
    (``seg_to_boundaries`` here) and thins it (``thin_gt``).
"""

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import threading

import numpy as np

from mtjax.edge_counts import edge_counts  # noqa: F401  (re-exported)
from mtjax.edge_protocols import (  # noqa: F401  (re-exported)
    DEFAULT_PROTOCOL,
    DEFAULT_PROTOCOLS_BY_DATASET,
    HED_THRESHOLDS,
    MAX_DIST_NYUD,
    MAX_DIST_PASCAL,
    MTI_THRESHOLDS,
    PROTOCOLS,
    EdgeProtocol,
    get_protocol,
)
from mtjax.edge_synthetic import synthetic_edge_maps  # noqa: F401  (re-exported)
from mtjax.ops.boundaries import (  # noqa: F401  (re-exported)
    clear_pixels,
    edge_nms,
    edge_orientation,
    seg_to_boundaries,
    set_pixels,
    thin,
    thin_flat,
)

__all__ = [
    "edge_pr_curve",
    "edge_state",
    "empty_edge_state",
    "finalize_edges",
    "merge_edge_states",
    "shutdown_pools",
]


# ----------------------------------------------------------------------------------------------
# Batches, pooling, finalize.


def _image_f(counts):
  """Per-image F at each threshold as SEISM eval_cont.m: 0 without gt or without prediction."""
  cnt_r, sum_r, cnt_p, sum_p = (counts[:, i].astype(np.float64) for i in range(4))
  valid = (sum_r > 0) & (sum_p > 0)
  rec = np.where(valid, cnt_r / np.maximum(sum_r, 1), 0.0)
  prec = np.where(valid, cnt_p / np.maximum(sum_p, 1), 0.0)
  denom = prec + rec
  return np.where(denom > 0, 2 * prec * rec / np.where(denom > 0, denom, 1), 0.0)


def _image_state(args):
  prob, gt, protocol = args
  counts = edge_counts(prob, gt, protocol)
  best = int(np.argmax(_image_f(counts)))  # first maximum, as MATLAB max
  return counts, counts[best]


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _get_pool(num_workers):
  """The pool of ``num_workers`` processes that ``edge_state`` reuses (started on first use)."""
  with _POOLS_LOCK:
    pool = _POOLS.get(num_workers)
    if pool is None:
      # spawn: the parent may hold JAX / BLAS threads, which fork does not survive safely.
      pool = concurrent.futures.ProcessPoolExecutor(
          num_workers, mp_context=multiprocessing.get_context("spawn"))
      _POOLS[num_workers] = pool
    return pool


def shutdown_pools():
  """Shuts down the worker processes that ``edge_state(..., num_workers=n)`` keeps for reuse."""
  with _POOLS_LOCK:
    for pool in _POOLS.values():
      pool.shutdown(wait=True, cancel_futures=True)
    _POOLS.clear()


def empty_edge_state(protocol=DEFAULT_PROTOCOL):
  """The additive identity of ``edge_state`` for a protocol (all zeros, no images).

  Args:
    protocol: ``EdgeProtocol`` or a name in ``PROTOCOLS``.

  Returns:
    dict as ``edge_state``: "ods_counts" int64 [K, 4], "ois_counts" int64 [4], "images" int64 [].

  Raises:
    ValueError: an unknown protocol.
  """
  num_t = len(get_protocol(protocol).thresholds)
  return {
      "ods_counts": np.zeros((num_t, 4), np.int64),
      "ois_counts": np.zeros(4, np.int64),
      "images": np.zeros((), np.int64),
  }


def edge_state(probs, gts, protocol=DEFAULT_PROTOCOL, num_workers=None):
  """Additive BSDS edge state of a batch: merge batches by elementwise sum, then finalize.

  Args:
    probs: float array [B, H, W, 1] or [B, H, W], edge probabilities in [0, 1] (e.g. sigmoid),
      each image at its original size (no padding).
    gts: array of the same shape: 1 = boundary, 0 = not, 255 = ignore.
    protocol: ``EdgeProtocol`` or a name in ``PROTOCOLS``.
    num_workers: None or 1 = serial; n > 1 = that many worker processes over the images (a pool
      kept for reuse across calls, spawn start method; see ``shutdown_pools``); -1 =
      ``os.cpu_count()``.

  Returns:
    dict: "ods_counts" int64 [K, 4] per-threshold (cntR, sumR, cntP, sumP) summed over images;
    "ois_counts" int64 [4], each image's counts at its own best-F threshold (the first of equal
    maxima, as MATLAB ``max`` in SEISM general_ois.m), summed; "images" int64 scalar. An image
    without gt and without prediction contributes zeros; one without gt but with predictions adds
    them as false positives (to ois_counts at the first threshold, its F being 0 at all).

  Raises:
    ValueError: bad shapes, dtypes or values (see ``edge_counts``), a bad ``num_workers``.
  """
  protocol = get_protocol(protocol)
  p = np.asarray(probs)
  g = np.asarray(gts)
  if p.ndim == 4 and p.shape[-1] == 1:
    p = p[..., 0]
  if g.ndim == 4 and g.shape[-1] == 1:
    g = g[..., 0]
  if p.ndim != 3 or g.shape != p.shape:
    raise ValueError(f"probs and gts must be [B, H, W, 1] or [B, H, W] of one shape, got "
                     f"{np.shape(probs)} and {np.shape(gts)}")
  if num_workers == -1:
    num_workers = os.cpu_count() or 1
  if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
    raise ValueError(f"num_workers must be None, -1 or an int >= 1, got {num_workers!r}")
  state = empty_edge_state(protocol)
  jobs = [(p[i], g[i], protocol) for i in range(p.shape[0])]
  if num_workers is None or num_workers == 1 or len(jobs) <= 1:
    results = map(_image_state, jobs)
  else:
    pool = _get_pool(num_workers)
    try:
      results = list(pool.map(_image_state, jobs))
    except concurrent.futures.process.BrokenProcessPool:
      with _POOLS_LOCK:  # a worker died (e.g. killed): the next call starts a new pool
        if _POOLS.get(num_workers) is pool:
          del _POOLS[num_workers]
      raise
  for counts, best in results:
    state["ods_counts"] += counts
    state["ois_counts"] += best
  state["images"] += p.shape[0]
  return state


def merge_edge_states(*states):
  """Elementwise sum of ``edge_state`` dicts (what a caller's generic merge of states does).

  Args:
    *states: one or more dicts from ``edge_state`` / ``empty_edge_state`` of one protocol.

  Returns:
    dict of int64 arrays, the same keys and shapes.

  Raises:
    ValueError: no state, or states whose keys or shapes differ.
  """
  if not states:
    raise ValueError("merge_edge_states needs at least one state")
  for other in states[1:]:
    if set(other) != set(states[0]) or any(
        np.shape(other[k]) != np.shape(states[0][k]) for k in states[0]):
      raise ValueError("edge states to merge must have the same keys and shapes (one protocol)")
  out = {k: np.array(v, np.int64, copy=True) for k, v in states[0].items()}
  for s in states[1:]:
    for k in out:
      out[k] = out[k] + np.asarray(s[k], np.int64)
  return out


def _pooled_pr(counts):
  """Pooled (P, R) as SEISM gather_measure.m, float64 [..., 4] -> ([...], [...])."""
  cnt_r, sum_r, cnt_p, sum_p = (np.asarray(counts[..., i], np.float64) for i in range(4))
  rec = np.zeros_like(cnt_r)
  prec = np.zeros_like(cnt_r)
  no_gt = (sum_r == 0) & (cnt_p == 0)
  rec[no_gt], prec[no_gt] = 1.0, 0.0
  no_pred = (sum_p == 0) & (cnt_r == 0)
  rec[no_pred], prec[no_pred] = 0.0, 1.0
  ok = (sum_p != 0) & (cnt_r != 0)
  rec[ok] = cnt_r[ok] / sum_r[ok]
  prec[ok] = cnt_p[ok] / sum_p[ok]
  return prec, rec


def _f_measure(prec, rec):
  denom = prec + rec
  return np.where(denom > 0, 2 * prec * rec / np.where(denom > 0, denom, 1), 0.0)


def edge_pr_curve(state):
  """Pooled per-threshold precision, recall and F (fractions), as SEISM gather_measure.m.

  Args:
    state: dict with "ods_counts" int [K, 4] (cntR, sumR, cntP, sumP), e.g. from ``edge_state``.

  Returns:
    (precision, recall, F), float64 [K] each, in [0, 1].
  """
  prec, rec = _pooled_pr(np.asarray(state["ods_counts"]))
  return prec, rec, _f_measure(prec, rec)


def finalize_edges(state, protocol=DEFAULT_PROTOCOL):
  """odsF, oisF and AP in percent from an ``edge_state`` (merged over the split).

  SEISM ``gather_measure.m`` / ``general_ods.m`` / ``general_ois.m`` / ``general_ap.m``: odsF = the
  maximum over thresholds of F = 2PR / (P + R) of the pooled counts (no interpolation, unlike
  pyEdgeEval's ODS); oisF = F of the pooled per-image-best counts; AP = sum over r = 0, 0.01, ..., 1
  of P(r) interpolated linearly over the (unique) recalls, where defined, / 100.

  Args:
    state: dict from ``edge_state`` / ``merge_edge_states``.
    protocol: the protocol the state was computed with (checks the number of thresholds).

  Returns:
    {"odsF": float, "oisF": float, "ap": float} in percent (e.g. 78.10), or {} when the state has
    no gt boundary pixel at all.

  Raises:
    ValueError: ``state`` lacks a key or its shapes do not match the protocol.
  """
  protocol = get_protocol(protocol)
  try:
    ods = np.asarray(state["ods_counts"], np.int64)
    ois = np.asarray(state["ois_counts"], np.int64)
  except KeyError as err:
    raise ValueError(f"state must hold 'ods_counts' and 'ois_counts', missing {err}") from None
  num_t = len(protocol.thresholds)
  if ods.shape != (num_t, 4) or ois.shape != (4,):
    raise ValueError(f"state shapes ods_counts {ods.shape}, ois_counts {ois.shape} do not match "
                     f"protocol {protocol.name!r}: expected ({num_t}, 4) and (4,)")
  if not np.any(ods[:, 1] > 0):
    return {}
  prec, rec = _pooled_pr(ods)
  f = _f_measure(prec, rec)
  ois_prec, ois_rec = _pooled_pr(ois)
  ois_f = float(_f_measure(ois_prec, ois_rec))
  return {"odsF": 100.0 * float(f.max()), "oisF": 100.0 * ois_f, "ap": 100.0 * _ap(prec, rec)}


def _ap(prec, rec):
  """SEISM general_ap.m: unique recalls (first occurrence), interp1 of P at 0:0.01:1, NaN out."""
  r_unique, first = np.unique(rec, return_index=True)
  if r_unique.size < 2:
    return 0.0
  p_unique = prec[first]
  grid = np.arange(101) / 100.0  # 0:.01:1
  inside = (grid >= r_unique[0]) & (grid <= r_unique[-1])
  return float(np.interp(grid[inside], r_unique, p_unique).sum() / 100.0)
