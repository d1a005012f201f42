"""Boundary detection odsF / oisF / AP by the BSDS protocol, on host (NumPy / SciPy).

Reference: shared/reference/DATA_AND_METRICS.md, section "Metrics for the PASCAL and NYUD-MT tasks"
(edge odsF, the MTI / MT-CP variant, pyEdgeEval). Tags: [SEISM] = jponttuset/seism as set up in
prismformore/Boundary-Detection-Evaluation-Tools (BDET) for InvPT / TaskPrompter / DMTL; [MTI] =
SimonVandenhende/Multi-Task-Learning-PyTorch evaluation/eval_edge.py and
evaluation/seism/read_one_png.m (MT-CP reuses them); [BSDS] = the Berkeley segbench correspondPixels
(match.cc); [PEE] = pyEdgeEval 0.2.8.

Per image and threshold t (``edge_counts``), as SEISM's ``eval_method.m`` -> ``eval_cont.m`` ->
``edgesEvalImg.m``:

1. The prediction is quantized as the saved png, ``floor(p * 255) / 255`` (``protocol.quantize``;
   ``p * 255`` in p's dtype, float32 as in the PyTorch pipelines that save the pngs).
2. Optionally (``protocol.nms``) Piotr's NMS as SEISM ``src/io/read_one_cont_png.m``: orientation
   from ``gradient2(convTri(E, 4))``, ``O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi)``, then
   ``edgesNmsMex(E, O, r=1, s=5, m=1.01)`` on the *unsmoothed* E (float32 as ``im2single``).
3. Binarize ``E > t`` (SEISM read_one_cont_png, ``protocol.strict``) or ``E >= t`` (MTI
   read_one_png), comparing in float64 (float32 maps are widened exactly, as NumPy promotes; whether
   MATLAB rounds t to single instead only matters for pixels exactly at 0.2, 0.4, 0.6, 0.8).
4. Thin the binary map, ``bwmorph(B, 'thin', Inf)`` (``protocol.thin_prediction``; edgesEvalImg.m).
   The gt boundary map is thinned once the same way (``protocol.thin_gt``; edgesEvalImg.m thins
   ``seg2bmap(G)``). Pixels whose gt is 255 (ignore) are then removed from both maps. [PEE]'s
   ``binary_thin`` stops as soon as one subiteration changes nothing, not a whole iteration as
   MATLAB and ``skimage.morphology.thin`` (= ours, tested): it can keep a pixel more.
5. Match predicted and gt boundary pixels one-to-one within ``r = max_dist * sqrt(H^2 + W^2)``
   pixels (``u^2 + v^2 <= r^2``, as [BSDS] match.cc). BSDS ``correspondPixels`` solves a min-cost
   perfect assignment in which each unmatched pixel costs ``outlierCost = 100 r`` and a match costs
   its distance (<= r), so its solution is a maximum-cardinality matching (ties broken by total
   distance, which does not change the counts). Here the cardinality is computed exactly, as a
   maximum flow (SciPy's Dinic) on the graph of pairs within r; see ``_Matcher``. BSDS connects the
   outlier nodes by a sparse random graph (degree 6), with which its assignment can miss a few
   matches that a maximum matching has, differently from run to run: [PEE] reports ~0.01 %
   differences from MATLAB; on the tests' maps its counts are up to ~1 % (of the gt pixels) below
   ours at some thresholds and odsF ~0.05 points below.
6. Counts (cntR, sumR, cntP, sumP) = (matched gt px, all gt px, matched predicted px, all predicted
   px); with one gt map cntR == cntP.

Over a split (``finalize_edges``, SEISM ``gather_measure.m``, ``general_ods.m``, ``general_ois.m``,
``general_ap.m``): ODS pools the counts per threshold over images, R = sum cntR / sum sumR,
P = sum cntP / sum sumP, F = 2PR / (P + R), odsF = the maximum over thresholds (no interpolation;
[PEE] interpolates 101 steps between adjacent thresholds, which gives >= this value). OIS takes each
image's best-F threshold (first on ties, MATLAB ``max``; per-image F as eval_cont.m: 0 when the
image has no gt or no prediction) and pools those counts. AP = the mean of P interpolated linearly
over R at 0, 0.01, ..., 1 where defined (``interp1``), summed and divided by 100.

Design for speed (654 NYUD images, 480 x 640, 99 thresholds, in minutes on 2 CPU cores; pyEdgeEval
takes about a minute per image): the map is ranked once per image, so each threshold's foreground
is a prefix of one pixel order; thinning visits only pixels that can change (the boundary of the
foreground, then the neighbours of deleted pixels) and reads a 3 x 3 neighbourhood as three row
windows, which gives the exact fixed point of the parallel two-subiteration algorithm; thresholds
whose binary map equals the previous one reuse its counts; the pixel pairs within r are built once
per image for the union of all thresholds' thinned predictions near the gt; each threshold's
matching starts from the previous threshold's maximum matching and only searches the remaining
augmenting paths. Measured (tools/benchmark_metrics.py, 654 synthetic 480 x 640 maps, mtinet_nyud,
2-core dev machine): 241 s with ``num_workers=2``, 0.66 s per image in one process; pyEdgeEval's
evaluation of the same maps: ~64 s per image.

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
import dataclasses
import math
import multiprocessing
import os
import threading

import numpy as np
from scipy import ndimage
from scipy import sparse
from scipy.sparse import csgraph

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

# Thresholds 0.01, 0.02, ..., 0.99 as MTI eval_edge.py writes them ('%.2f' of np.arange(0.01, 1,
# 0.01)) and SEISM parses them (str2double): the nearest doubles to the decimal literals. Equal to
# pyEdgeEval's ``thresholds=99`` (linspace(1/100, 99/100, 99)) up to rounding.
MTI_THRESHOLDS = tuple(float(f"{k / 100:.2f}") for k in range(1, 100))
# SEISM ``parameters/HED.txt`` (101 values), used by BDET ``pr_curves_base.m``.
HED_THRESHOLDS = (0.001,) + MTI_THRESHOLDS + (0.999,)

# maxDist (fraction of the image diagonal) by database, SEISM ``src/scripts/eval_method.m``.
MAX_DIST_NYUD = 0.011
MAX_DIST_PASCAL = 0.0075


@dataclasses.dataclass(frozen=True)
class EdgeProtocol:
  """One boundary-evaluation protocol: what is done to the maps before BSDS matching.

  Attributes:
    name: key in ``PROTOCOLS``.
    max_dist: matching radius as a fraction of the image diagonal (SEISM ``maxDist``), > 0.
    thresholds: strictly increasing thresholds in [0, 1] on the (NMS'd) edge strength.
    nms: Piotr / SEISM NMS on the raw map with orientation from ``convTri(E, 4)`` gradients, as
      SEISM ``read_one_cont_png.m`` (BDET copy).
    strict: binarize with ``E > t`` (SEISM read_one_cont_png), else ``E >= t`` (MTI read_one_png).
    thin_prediction: ``bwmorph(B, 'thin', Inf)`` on each binary prediction (edgesEvalImg
      ``thin=1``).
    thin_gt: the same thinning on the gt boundary map (edgesEvalImg thins ``seg2bmap(G)``).
    quantize: ``floor(p * 255) / 255`` first, as the uint8 png SEISM and MTI read.
  """

  name: str
  max_dist: float
  thresholds: tuple[float, ...]
  nms: bool
  strict: bool
  thin_prediction: bool = True
  thin_gt: bool = True
  quantize: bool = True

  def __post_init__(self):
    t = np.asarray(self.thresholds, np.float64)
    if not (isinstance(self.max_dist, (int, float)) and math.isfinite(self.max_dist)
            and self.max_dist > 0):
      raise ValueError(f"EdgeProtocol {self.name!r}: max_dist must be a finite float > 0 "
                       f"(fraction of the image diagonal), got {self.max_dist!r}")
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
      raise ValueError(f"EdgeProtocol {self.name!r}: thresholds must be a non-empty sequence of "
                       f"floats in [0, 1], got {self.thresholds!r}")
    if np.any(np.diff(t) <= 0):
      raise ValueError(f"EdgeProtocol {self.name!r}: thresholds must be strictly increasing")


PROTOCOLS: dict[str, EdgeProtocol] = {
    # MTI-Net (Vandenhende et al., ECCV 2020) and MT-CP: [MTI] evaluation/eval_edge.py writes
    # thresholds 0.01..0.99, evaluation/seism/read_one_png.m = double(png)/255 >= t, no NMS;
    # SEISM edgesEvalImg thins the prediction and seg2bmap(gt); maxDist 0.011 for NYUD
    # (eval_method.m). MT-CP's NYUD script still names database 'PASCALContext' (maxDist 0.0075,
    # PASCAL gt) with edge evaluation off: this is the protocol MT-CP's code would run if fixed.
    "mtinet_nyud": EdgeProtocol(
        name="mtinet_nyud", max_dist=MAX_DIST_NYUD, thresholds=MTI_THRESHOLDS, nms=False,
        strict=False),
    # The same for PASCAL-Context (maxDist 0.0075, eval_method.m 'PASCALContext'): MTI-Net's
    # PASCAL odsF (its eval_edge.py evaluates PASCALContext only).
    "mtinet_pascal": EdgeProtocol(
        name="mtinet_pascal", max_dist=MAX_DIST_PASCAL, thresholds=MTI_THRESHOLDS, nms=False,
        strict=False),
    # InvPT (Ye & Xu, ECCV 2022), TaskPrompter (ICLR 2023), DMTL via BDET: SEISM with HED's 101
    # thresholds (pr_curves_base.m), read_one_cont_png (NMS, E > t), maxDist 0.011 (NYUD).
    # InvPT README: "identical to ATRC and ASTMT". Use it to compare with their NYUD odsF (78.10).
    "seism_nyud": EdgeProtocol(
        name="seism_nyud", max_dist=MAX_DIST_NYUD, thresholds=HED_THRESHOLDS, nms=True,
        strict=True),
    # The same for PASCAL-Context (maxDist 0.0075); InvPT's PASCAL odsF 73.00 is on test_new.
    "seism_pascal": EdgeProtocol(
        name="seism_pascal", max_dist=MAX_DIST_PASCAL, thresholds=HED_THRESHOLDS, nms=True,
        strict=True),
}

# Default for an edge task: the MTI-Net / MT-CP variant. MT-CP is this project's seed and its
# evaluation code is MTI-Net's, so its numbers (and the multi-task baselines it compares with, run
# through the same code) use 99 thresholds without NMS; it is also the cheaper protocol. Use
# "seism_*" to compare with the InvPT / TaskPrompter / ATRC tables.
DEFAULT_PROTOCOL = "mtinet_nyud"
DEFAULT_PROTOCOLS_BY_DATASET = {"nyud": "mtinet_nyud", "pascal": "mtinet_pascal"}


def get_protocol(protocol):
  """Returns the ``EdgeProtocol`` for a protocol or its ``PROTOCOLS`` name.

  Args:
    protocol: an ``EdgeProtocol`` (returned as is) or a key of ``PROTOCOLS``.

  Returns:
    ``EdgeProtocol``.

  Raises:
    ValueError: an unknown name or a value of another type.
  """
  if isinstance(protocol, EdgeProtocol):
    return protocol
  if isinstance(protocol, str):
    if protocol not in PROTOCOLS:
      raise ValueError(f"unknown edge protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]
  raise ValueError(f"protocol must be an EdgeProtocol or a name in {sorted(PROTOCOLS)}, "
                   f"got {type(protocol).__name__}")


# ----------------------------------------------------------------------------------------------
# Per-image evaluation.


def _check_image_pair(prob, gt):
  p = np.asarray(prob)
  g = np.asarray(gt)
  if p.ndim == 3 and p.shape[-1] == 1:
    p = p[..., 0]
  if g.ndim == 3 and g.shape[-1] == 1:
    g = g[..., 0]
  if p.ndim != 2 or g.shape != p.shape or min(p.shape) < 1:
    raise ValueError(f"prob and gt must be [H, W] (or [H, W, 1]) of one shape, got {np.shape(prob)}"
                     f" and {np.shape(gt)}")
  if not np.issubdtype(p.dtype, np.floating):
    raise ValueError(f"prob must be a float array of probabilities in [0, 1], got dtype {p.dtype}")
  if not (np.all(p >= 0) and np.all(p <= 1)):  # NaN fails both.
    raise ValueError(f"prob must lie in [0, 1] (no NaN), got values in [{np.nanmin(p)}, "
                     f"{np.nanmax(p)}]")
  bad = (g != 0) & (g != 1) & (g != 255)
  if np.any(bad):
    raise ValueError(f"gt must hold 0 (no boundary), 1 (boundary) or 255 (ignore), got e.g. "
                     f"{g[bad].ravel()[0]!r}")
  return p, g


def _strength(p, protocol):
  """The map that is thresholded, as (values float64 [L] ascending, levels int [H, W]).

  ``values[levels]`` is the map: quantized without NMS, ``double(png) / 255.0`` (MTI
  read_one_png); with NMS, ``im2single(png)`` through ``edge_nms`` (SEISM read_one_cont_png), its
  float32 values widened exactly to float64 for the comparison with the thresholds.
  """
  if protocol.quantize:
    q = np.clip(np.floor(p * p.dtype.type(255)), 0, 255).astype(np.int16)
    if not protocol.nms:
      return np.arange(256, dtype=np.float64) / 255.0, q
    e = edge_nms(q.astype(np.float32) / np.float32(255), None)
  elif protocol.nms:
    e = edge_nms(p.astype(np.float32), None)
  else:
    e = p
  values, levels = np.unique(np.asarray(e, np.float64), return_inverse=True)
  dtype = np.int16 if values.size < 2**15 else np.int32
  return values, levels.reshape(p.shape).astype(dtype)


def _disk_offsets(radius, width):
  """Flat offsets of the integer (u, v) with u^2 + v^2 <= radius^2 (float64, as match.cc), nearest
  first."""
  rr = int(math.ceil(radius))
  v, u = np.mgrid[-rr:rr + 1, -rr:rr + 1]
  d2 = (u * u + v * v).ravel()
  order = np.argsort(d2, kind="stable")
  inside = d2[order].astype(np.float64) <= radius * radius
  return (v.ravel()[order] * width + u.ravel()[order])[inside].astype(np.int64)


def edge_counts(prob, gt, protocol=DEFAULT_PROTOCOL):
  """BSDS boundary counts of one image at every threshold of the protocol.

  Implements SEISM ``eval_cont.m`` / Piotr ``edgesEvalImg.m`` with ``correspondPixels`` [BSDS] as a
  maximum bipartite matching (see the module docstring for each step and its reference).

  Args:
    prob: float array [H, W] (or [H, W, 1]), edge probability in [0, 1] at the original image size.
    gt: array [H, W] (or [H, W, 1]), float or integer: 1 = boundary, 0 = not, 255 = ignore (removed
      from the gt and the prediction before matching).
    protocol: ``EdgeProtocol`` or a name in ``PROTOCOLS``.

  Returns:
    int64 array [K, 4], K = len(protocol.thresholds), columns (cntR, sumR, cntP, sumP): matched gt
    pixels, all gt boundary pixels, matched predicted pixels, all predicted (thinned) pixels.

  Raises:
    ValueError: shapes differ or are not [H, W]; prob is not a float array in [0, 1]; gt holds a
    value other than 0, 1, 255; an unknown protocol.
  """
  protocol = get_protocol(protocol)
  p, g = _check_image_pair(prob, gt)
  h, w = p.shape
  thresholds = np.asarray(protocol.thresholds, np.float64)
  num_t = thresholds.size
  counts = np.zeros((num_t, 4), np.int64)

  radius = protocol.max_dist * math.sqrt(h * h + w * w)
  pad = max(1, int(math.ceil(radius)))
  hp, wp = h + 2 * pad, w + 2 * pad
  inner = (slice(pad, pad + h), slice(pad, pad + w))

  # Gt boundary pixels (thinned), ignore mask, and the band of pixels within the radius of the gt.
  ignore = g == 255
  gt_mask = g == 1
  if protocol.thin_gt and gt_mask.any():
    gt_mask = thin(gt_mask)
  gt_img = np.zeros((hp, wp), bool)
  gt_img[inner] = gt_mask
  gt_flat = np.flatnonzero(gt_img)
  num_gt = gt_flat.size
  counts[:, 1] = num_gt
  ignore_img = np.zeros((hp, wp), bool)
  ignore_img[inner] = ignore
  ignore_flat = ignore_img.ravel()
  has_ignore = bool(ignore.any())

  # Levels: rank of each pixel's strength among the image's distinct values; each threshold is a
  # level cutoff, so its foreground is {level >= cutoff}.
  values, levels = _strength(p, protocol)
  side = "right" if protocol.strict else "left"
  cutoffs = np.searchsorted(values, thresholds, side=side)  # first level above (or at) t
  lev_img = np.full((hp, wp), -1, levels.dtype)
  lev_img[inner] = levels
  lev_flat = lev_img.ravel()
  # The lowest level in each pixel's 3 x 3 neighbourhood (-1 outside the image): a foreground pixel
  # is on the boundary of {level >= c} iff that minimum is < c.
  nb_min = ndimage.minimum_filter(lev_img, size=3, mode="constant", cval=-1).ravel()
  # Image pixels by decreasing level (radix sort for int16): a threshold's foreground is a prefix.
  pix = np.flatnonzero(lev_flat >= 0)
  neg = -lev_flat[pix]
  pix_sorted = pix[np.argsort(neg, kind="stable")]
  nbmin_sorted = nb_min[pix_sorted]
  # Number of pixels with level >= c, for every cutoff c.
  num_fg = np.searchsorted(np.sort(neg, kind="stable"), -cutoffs, side="right")

  # Pass 1: the thinned prediction of every distinct threshold.
  preds = [None] * num_t
  img = np.zeros(hp * wp, np.uint8)
  win = np.zeros(hp * wp, np.uint8)
  stamp = np.empty(hp * wp, np.int32)
  for k in range(num_t):
    n = int(num_fg[k])
    if k and n == num_fg[k - 1]:
      preds[k] = preds[k - 1]
      continue
    fg = pix_sorted[:n]
    if n and protocol.thin_prediction:
      set_pixels(img, win, fg)
      thin_flat(img, win, fg[nbmin_sorted[:n] < cutoffs[k]], wp, stamp)
      fg = fg[img[fg] != 0]
      clear_pixels(img, win, fg)  # the deleted pixels are clear already
    if has_ignore:
      fg = fg[~ignore_flat[fg]]
    preds[k] = fg

  for k in range(num_t):
    counts[k, 3] = preds[k].size
  if num_gt == 0:
    return counts

  # Pass 2: the pairs within the radius, once for the union of the predictions near the gt.
  disk = _disk_offsets(radius, wp)
  dist = ndimage.distance_transform_edt(~gt_img)
  band = (np.rint(dist * dist) <= radius * radius).ravel()
  near = [None] * num_t
  for k in range(num_t):
    if k and preds[k] is preds[k - 1]:
      near[k] = near[k - 1]
    else:
      near[k] = preds[k][band[preds[k]]]
  mark = np.zeros(hp * wp, bool)
  for k in range(num_t):
    mark[near[k]] = True
  union = np.flatnonzero(mark)
  if union.size == 0:
    return counts
  gidx = np.full(hp * wp, -1, np.int32)
  gidx[gt_flat] = np.arange(num_gt, dtype=np.int32)
  matcher = _Matcher(union, disk, gidx, num_gt)
  row_of = np.full(hp * wp, -1, np.int64)
  row_of[union] = np.arange(union.size)

  # Highest threshold first: the fewest predicted pixels, solved from scratch; each lower threshold
  # starts from the previous maximum matching restricted to the pixels still predicted.
  for k in range(num_t - 1, -1, -1):
    if k < num_t - 1 and near[k] is near[k + 1]:
      counts[k, 0] = counts[k, 2] = counts[k + 1, 0]
      continue
    matched = matcher.max_matching(row_of[near[k]])
    counts[k, 0] = counts[k, 2] = matched
  return counts


class _Matcher:
  """Maximum-cardinality matching of predicted and gt boundary pixels within the radius.

  The pairs within the radius are built once for the union of all thresholds' predicted pixels near
  the gt (CSR, rows = those pixels, columns = gt pixels). ``max_matching(rows)`` solves one
  threshold: it keeps the pairs of the last matching whose predicted pixel is still present (a valid
  matching of the new graph), then finds the remaining augmenting paths exactly as a maximum flow
  in the residual network (source -> free predicted px -> gt px (unmatched pairs) -> predicted px
  (matched pairs, reversed) ... -> free gt px -> sink), SciPy's Dinic
  (``scipy.sparse.csgraph.maximum_flow``). Max flow of the residual network = max matching - |M|.
  The search runs from the side with fewer free vertices (the reversed network when that is the gt
  side). Results equal a from-scratch maximum matching at every threshold (tested). SciPy's
  ``maximum_bipartite_matching`` is not used: its Hopcroft-Karp DFS takes exponential time on
  layered graphs such as pixels along parallel lines (scipy/scipy#26147; it hung here).
  """

  def __init__(self, rows_flat, disk, gidx, num_gt, chunk=4096):
    indptr = [np.zeros(1, np.int64)]
    indices = []
    total = 0
    for start in range(0, rows_flat.size, chunk):
      block = gidx[rows_flat[start:start + chunk, None] + disk[None, :]]
      hit = block >= 0
      per_row = hit.sum(1)
      indptr.append(total + np.cumsum(per_row))
      total += int(per_row.sum())
      indices.append(block[hit])
    self.indptr = np.concatenate(indptr)
    # Sorted columns in each row, so the residual networks below are canonical CSR as built.
    pairs = sparse.csr_matrix(
        (np.ones(total, np.int8), np.concatenate(indices), self.indptr),
        shape=(rows_flat.size, num_gt))
    pairs.sort_indices()
    self.indices = pairs.indices.astype(np.int64)
    self.num_gt = num_gt
    self.row_match = np.full(rows_flat.size, -1, np.int64)  # gt matched to each union row

  def max_matching(self, rows):
    """Size of a maximum matching of the union rows ``rows`` (int64 [n]) with all gt pixels."""
    n1, n2 = rows.size, self.num_gt
    if n1 == 0:
      self.row_match[:] = -1
      return 0
    starts = self.indptr[rows]
    lens = self.indptr[rows + 1] - starts
    num_e = int(lens.sum())
    if num_e == 0:
      self.row_match[:] = -1
      return 0
    # Edge e of local row i: union edge starts[i] + (e - first edge of row i).
    first = np.cumsum(lens) - lens
    edge_rows = np.repeat(np.arange(n1), lens)
    cols = self.indices[np.repeat(starts - first, lens) + np.arange(num_e)]

    pm = self.row_match[rows]  # warm start; a valid matching (rows are distinct, gts unique)
    gm = np.full(n2, -1, np.int64)
    has = pm >= 0
    gm[pm[has]] = np.flatnonzero(has)
    free_p = np.flatnonzero((pm < 0) & (lens > 0))
    if free_p.size and np.any(gm < 0):
      # Residual network: vertices 0..n1-1 predicted px, n1..n1+n2-1 gt px, s, t.
      s, t = n1 + n2, n1 + n2 + 1
      unmatched = cols != pm[edge_rows]
      row_len = np.concatenate([np.bincount(edge_rows[unmatched], minlength=n1),
                                np.ones(n2, np.int64), [free_p.size, 0]])
      indptr = np.concatenate([[0], np.cumsum(row_len)])
      indices = np.concatenate([n1 + cols[unmatched], np.where(gm >= 0, gm, t), free_p])
      graph = sparse.csr_matrix(
          (np.ones(indices.size, np.int32), indices.astype(np.int32), indptr.astype(np.int32)),
          shape=(n1 + n2 + 2, n1 + n2 + 2))
      graph.has_sorted_indices = True  # rows: sorted gt columns; one entry; ascending free_p
      # Search from the side with fewer free vertices: the same flow in the reversed network.
      reverse = np.count_nonzero(gm < 0) < free_p.size
      if reverse:
        graph = graph.T.tocsr()  # csr -> csc conversion: sorted indices
        result = csgraph.maximum_flow(graph, t, s, method="dinic")
      else:
        result = csgraph.maximum_flow(graph, s, t, method="dinic")
      if result.flow_value > 0:
        flow = result.flow
        f_rows = np.repeat(np.arange(n1 + n2 + 2), np.diff(flow.indptr))
        pos = flow.data > 0
        a, b = f_rows[pos], flow.indices[pos]
        if reverse:
          a, b = b, a
        unmatch = (a >= n1) & (a < n1 + n2) & (b < n1)  # g -> p on a matched pair
        pm[b[unmatch]] = -1
        new = (a < n1) & (b >= n1) & (b < n1 + n2)  # p -> g
        pm[a[new]] = b[new] - n1
    self.row_match[:] = -1
    self.row_match[rows] = pm
    return int(np.count_nonzero(pm >= 0))


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
