"""Boundary-map image operations of the BSDS / SEISM edge evaluation, on host (NumPy / SciPy):
``seg2bmap`` (``seg_to_boundaries``), MATLAB's ``bwmorph(..., 'thin', Inf)`` (``thin``) and Piotr
Dollár's edge NMS with its orientation (``edge_orientation``, ``edge_nms``). Used by
``mtjax.edge_metrics``; references and tags ([SEISM], [BDET]) as there.
"""

import numpy as np
from scipy import ndimage

# ----------------------------------------------------------------------------------------------
# Morphology: seg2bmap and bwmorph thin.


def seg_to_boundaries(labels):
  """Boundary map of a label image, as SEISM / BSDS ``seg2bmap`` (same-size case).

  A pixel is a boundary pixel when its label differs from its east, south or south-east neighbour;
  on the last row only the east neighbour counts, on the last column only the south one, and the
  bottom-right pixel is never a boundary [SEISM src/misc/seg2bmap.m].

  Args:
    labels: integer or float array [H, W], one label per region.

  Returns:
    bool array [H, W].

  Raises:
    ValueError: ``labels`` is not 2-D.
  """
  seg = np.asarray(labels)
  if seg.ndim != 2:
    raise ValueError(f"labels must be a 2-D label image [H, W], got shape {seg.shape}")
  b = np.zeros(seg.shape, bool)
  b[:, :-1] |= seg[:, :-1] != seg[:, 1:]
  b[:-1, :] |= seg[:-1, :] != seg[1:, :]
  b[:-1, :-1] |= seg[:-1, :-1] != seg[1:, 1:]
  # seg2bmap.m then overwrites the last row / column with the single-neighbour tests above (the
  # only tests that apply there) and clears the corner.
  b[-1, -1] = False
  return b


def _thinning_luts():
  """Deletion tables of the two subiterations of bwmorph 'thin' (Lam, Lee & Suen 1992, p. 879).

  Index = 8-bit neighbourhood code, bit k-1 = neighbour x_k, x_1..x_8 = E, NE, N, NW, W, SW, S, SE
  (N = the previous row). A pixel is deleted in subiteration 1 when G1, G2 and G3 hold and in
  subiteration 2 when G1, G2 and G3' hold (MATLAB bwmorph documentation; skimage.morphology.thin).
  """
  code = np.arange(256)
  x = [None] + [(code >> (k - 1)) & 1 for k in range(1, 9)]
  x.append(x[1])  # x_9 = x_1
  crossings = sum((1 - x[2 * i - 1]) & (x[2 * i] | x[2 * i + 1]) for i in range(1, 5))
  g1 = crossings == 1
  n1 = sum(x[2 * k - 1] | x[2 * k] for k in range(1, 5))
  n2 = sum(x[2 * k] | x[2 * k + 1] for k in range(1, 5))
  g2 = (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
  g3 = ((x[2] | x[3] | (1 - x[8])) & x[1]) == 0
  g3p = ((x[6] | x[7] | (1 - x[4])) & x[5]) == 0
  return g1 & g2 & g3, g1 & g2 & g3p


_THIN_LUTS = _thinning_luts()


def _window_luts():
  """The two deletion tables indexed by the 3 x 3 window as three 3-bit rows.

  Index bits 0-2 = the row above (NW, N, NE), 3-5 = the pixel's row (W, centre, E), 6-8 = the row
  below (SW, S, SE); only foreground centres are deleted.
  """
  index = np.arange(512)
  nw, n, ne, w, c, e, sw, s, se = ((index >> k) & 1 for k in range(9))
  code = e | ne << 1 | n << 2 | nw << 3 | w << 4 | sw << 5 | s << 6 | se << 7
  return tuple(lut[code] & (c == 1) for lut in _THIN_LUTS)


_WINDOW_LUTS = _window_luts()


def _neighbour_offsets(width):
  """Flat offsets of the 8 neighbours E, NE, N, NW, W, SW, S, SE in a row-major image."""
  w = width
  return np.array([1, 1 - w, -w, -w - 1, -1, w - 1, w, w + 1], np.int64)


def set_pixels(img, win, flat):
  """Sets pixels ``flat`` (unique) of ``img`` and updates ``win`` = row windows (see below)."""
  img[flat] = 1
  win[flat - 1] |= 4
  win[flat] |= 2
  win[flat + 1] |= 1


def clear_pixels(img, win, flat):
  """Clears pixels ``flat`` (unique) of ``img`` and of its row windows ``win``."""
  img[flat] = 0
  win[flat - 1] &= 3
  win[flat] &= 5
  win[flat + 1] &= 6


def thin_flat(img, win, candidates, width, stamp):
  """Thins a padded binary image in place; returns nothing.

  Exact bwmorph(B, 'thin', Inf): alternate the two parallel subiterations until nothing changes,
  but evaluate only pixels whose deletion test can have changed: at first the given candidates
  (every foreground pixel with a background 8-neighbour; interior pixels fail G1), then the
  candidates not deleted that the *other* subiteration's table would delete, plus the foreground
  neighbours of the pixels just deleted. A pixel outside this set has the same neighbourhood as
  when it last failed both tables, so it cannot be deleted; hence the same fixed point.

  Args:
    img: uint8 [N] flat padded image (0 / 1) with rows of ``width`` pixels and a zero border at
      least 1 px wide.
    win: uint8 [N] row windows ``img[p - 1] | img[p] << 1 | img[p + 1] << 2``, kept up to date, so
      a 3 x 3 neighbourhood is three lookups.
    candidates: int64 flat indices of the foreground pixels that may be deletable.
    width: the padded row length.
    stamp: int32 or int64 [N] scratch array (any content) used to deduplicate indices.
  """
  luts = _WINDOW_LUTS
  offsets = _neighbour_offsets(width)
  cand = candidates
  sub = 0
  while cand.size:
    code = win[cand - width].astype(np.intp)
    code |= win[cand].astype(np.intp) << 3
    code |= win[cand + width].astype(np.intp) << 6
    delete = luts[sub][code]
    dels = cand[delete]
    if dels.size:
      clear_pixels(img, win, dels)
      keep = cand[~delete & luts[1 - sub][code]]
      nb = (dels[:, None] + offsets).ravel()
      nb = nb[img[nb] != 0]
      arr = np.concatenate([keep, nb])
      pos = np.arange(arr.size, dtype=stamp.dtype)
      stamp[arr] = pos
      cand = arr[stamp[arr] == pos]
    else:
      cand = cand[luts[1 - sub][code]]
    sub ^= 1


def thin(mask):
  """Morphological thinning to 1-px lines, MATLAB ``bwmorph(mask, 'thin', Inf)``.

  The same result as ``skimage.morphology.thin`` (tested), computed on the active pixels only (see
  ``thin_flat``); used by edgesEvalImg.m on predictions and gt. (pyEdgeEval's ``binary_thin`` stops
  when one subiteration changes nothing and can keep a pixel more.)

  Args:
    mask: array [H, W], nonzero = foreground.

  Returns:
    bool array [H, W].

  Raises:
    ValueError: ``mask`` is not 2-D.
  """
  m = np.asarray(mask)
  if m.ndim != 2:
    raise ValueError(f"mask must be 2-D [H, W], got shape {m.shape}")
  h, w = m.shape
  img = np.zeros((h + 2, w + 2), np.uint8)
  flat = img.ravel()
  win = np.zeros_like(flat)
  inner = np.zeros(img.shape, bool)
  inner[1:-1, 1:-1] = m != 0
  fg = np.flatnonzero(inner)
  set_pixels(flat, win, fg)
  thin_flat(flat, win, fg, w + 2, np.empty(flat.size, np.int32))
  return img[1:-1, 1:-1].astype(bool)


# ----------------------------------------------------------------------------------------------
# SEISM read_one_cont_png: orientation and NMS.


def _conv_tri(image, r):
  """Piotr's ``convTri(I, r)`` for integer r >= 2: separable [1..r, r+1, r..1] / (r+1)^2 filter
  with symmetric (edge-repeating) padding [SEISM src/piotr_toolbox/convTri.m]."""
  f = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float64) / (r + 1) ** 2
  out = ndimage.correlate1d(image, f, axis=0, mode="reflect")
  return ndimage.correlate1d(out, f, axis=1, mode="reflect")


def _gradient2(image):
  """Piotr's ``[Gx, Gy] = gradient2(I)``: central differences inside, one-sided at the borders
  (x = columns, y = rows) [SEISM src/piotr_toolbox/gradient2.m, gradientMex]."""
  gy, gx = np.gradient(image)
  return gx, gy


def edge_orientation(edges):
  """Edge orientation as SEISM ``read_one_cont_png.m``, in radians in [0, pi).

  ``[Ox, Oy] = gradient2(convTri(E, 4)); [Oxx, ~] = gradient2(Ox); [Oxy, Oyy] = gradient2(Oy);
  O = mod(atan(Oyy .* sign(-Oxy) ./ (Oxx + 1e-5)), pi)``, in float32 as MATLAB single. A 0 / 0
  (NaN) orientation is set to 0.

  Args:
    edges: float array [H, W], edge strength in [0, 1].

  Returns:
    float32 array [H, W], radians; x = column axis, y = row axis.

  Raises:
    ValueError: ``edges`` is not 2-D.
  """
  e = np.asarray(edges, np.float32)
  if e.ndim != 2:
    raise ValueError(f"edges must be [H, W], got shape {e.shape}")
  smooth = _conv_tri(e, 4).astype(np.float32)
  ox, oy = _gradient2(smooth)
  oxx, _ = _gradient2(ox)
  oxy, oyy = _gradient2(oy)
  with np.errstate(divide="ignore", invalid="ignore"):
    o = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + np.float32(1e-5))), np.float32(np.pi))
  return np.nan_to_num(o, nan=0.0).astype(np.float32)


def edge_nms(edges, orientation, r=1, s=5, m=1.01):
  """Piotr's ``edgesNmsMex(E, O, r, s, m)``: non-maximum suppression of an edge map, float32.

  A nonzero pixel is zeroed when ``m * E`` is below E bilinearly interpolated at distance d = -r..r
  (d != 0) along its orientation (coordinates clamped to [0, size - 1.001]); then the values within
  s px of the border are scaled by (distance to the border) / s, s = min(s, W // 2, H // 2)
  [SEISM src/piotr_edges/edgesNmsMex.cpp; pyEdgeEval ``nms``].

  Args:
    edges: float array [H, W], edge strength (SEISM: png / 255 as single).
    orientation: float array [H, W], radians (x = column axis, y = row axis); None = the SEISM
      read_one_cont_png orientation, ``edge_orientation(edges)``.
    r: suppression radius in pixels.
    s: border radius in pixels.
    m: multiplier for conservative suppression.

  Returns:
    float32 array [H, W].

  Raises:
    ValueError: shapes differ or are not 2-D.
  """
  e0 = np.ascontiguousarray(edges, np.float32)
  if e0.ndim != 2:
    raise ValueError(f"edges must be [H, W], got shape {e0.shape}")
  o = edge_orientation(e0) if orientation is None else np.asarray(orientation, np.float32)
  if e0.shape != o.shape:
    raise ValueError(f"edges and orientation must have one shape, got {e0.shape} and {o.shape}")
  h, w = e0.shape
  out = e0.copy()
  ys, xs = np.nonzero(e0)
  if ys.size:
    flat = e0.ravel()
    val = flat[ys * w + xs] * np.float32(m)
    ori = o[ys, xs]
    coso, sino = np.cos(ori), np.sin(ori)
    xf, yf = xs.astype(np.float32), ys.astype(np.float32)
    suppress = np.zeros(ys.size, bool)
    for d in range(-r, r + 1):
      if d == 0:
        continue
      x = xf + np.float32(d) * coso
      y = yf + np.float32(d) * sino
      # Clamped as the C code: compared in double, assigned to float.
      x = np.where(x < 0, np.float32(0),
                   np.where(x.astype(np.float64) > w - 1.001, np.float32(w - 1.001), x))
      y = np.where(y < 0, np.float32(0),
                   np.where(y.astype(np.float64) > h - 1.001, np.float32(h - 1.001), y))
      x0 = x.astype(np.int64)
      y0 = y.astype(np.int64)
      dx0 = x - x0.astype(np.float32)
      dy0 = y - y0.astype(np.float32)
      dx1 = np.float32(1) - dx0
      dy1 = np.float32(1) - dy0
      i00 = y0 * w + x0
      interp = (flat[i00] * dx1 * dy1 + flat[i00 + 1] * dx0 * dy1 + flat[i00 + w] * dx1 * dy0
                + flat[i00 + w + 1] * dx0 * dy0)
      suppress |= val < interp
    out[ys[suppress], xs[suppress]] = 0
  s = min(s, w // 2, h // 2)
  col = np.ones(w, np.float32)
  row = np.ones(h, np.float32)
  for i in range(s):
    f = np.float32(i) / np.float32(s)
    col[i] *= f
    col[w - 1 - i] *= f
    row[i] *= f
    row[h - 1 - i] *= f
  out *= col[None, :]
  out *= row[:, None]
  return out
