"""BSDS boundary counts of one image at every threshold of a protocol (``edge_counts``); the
split-level odsF / oisF / AP that pool them are ``mtjax.edge_metrics`` (its docstring names the
references and the tags [SEISM], [MTI], [BSDS], [PEE]).

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

Design for speed (654 NYUD images, 480 x 640, 99 thresholds, in minutes on 2 CPU cores; pyEdgeEval
takes about a minute per image): the map is ranked once per image, so each threshold's foreground
is a prefix of one pixel order; thinning visits only pixels that can change (the boundary of the
foreground, then the neighbours of deleted pixels) and reads a 3 x 3 neighbourhood as three row
windows, which gives the exact fixed point of the parallel two-subiteration algorithm; thresholds
whose binary map equals the previous one reuse its counts; the pixel pairs within r are built once
per image for the union of all thresholds' thinned predictions near the gt; each threshold's
matching starts from the previous threshold's maximum matching and only searches the remaining
augmenting paths. Measured speed: ``mtjax.edge_metrics``.
"""

import math

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from mtjax.edge_protocols import DEFAULT_PROTOCOL, get_protocol
from mtjax.ops.boundaries import clear_pixels, edge_nms, set_pixels, thin, thin_flat

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
