"""Times the BSDS boundary metric (odsF / oisF, mtjax.edge_metrics) on synthetic NYUD-sized maps.

    python tools/benchmark_metrics.py                         # 654 images 480x640, mtinet_nyud
    python tools/benchmark_metrics.py --images 100 --protocol seism_nyud --pyedgeeval_images 1

Generates ``--images`` synthetic (prob, gt) pairs (``edge_metrics.synthetic_edge_maps``: gt =
boundaries of a warped Voronoi partition, prob = the gt shifted, partly weakened / dropped, with
spurious contours, blurred, on a smooth low background; kept as png levels floor(255 p), which is
all the protocols read), spread over the worker processes, before any timing. Then times:

* ``pooled``: ``edge_state(batch, num_workers=--workers)`` over all images, batch by batch as an
  evaluation loop calls it (the pool is started, and its workers import the module, before the
  clock starts);
* ``serial``: ``edge_state(batch)`` (one process) over the first ``--serial_images`` images,
  extrapolated linearly to all images when fewer;
* ``pyEdgeEval``: its own per-image evaluation, ``evaluate_boundaries_threshold`` (BSDS
  correspond_pixels, binary_thin, ``>=``; ``apply_nms`` = its fast_nms for NMS protocols), serially
  over the first ``--pyedgeeval_images`` images, extrapolated to all images (one process, and
  divided by ``--workers`` for an ideal pool), if pyEdgeEval is installed. It takes about a minute
  per 480 x 640 image with 99 thresholds, hence the small default.

odsF / oisF are printed for what was measured (our pooled run over all images; ours and
pyEdgeEval's over the pyEdgeEval subset, with pyEdgeEval's interpolated ODS beside the plain max).
Wall-clock seconds: other processes on the machine slow every row alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from mtjax import edge_metrics as em


def _make_batch(args):
  """Images start..start+count-1 (image i from seed i) as (uint8 [B, H, W] png levels floor(255 p),
  uint8 [B, H, W] gt)."""
  start, count, height, width = args
  levels, gts = [], []
  for i in range(count):
    prob, gt = em.synthetic_edge_maps(1, height, width, seed=start + i)
    levels.append(np.floor(prob * np.float32(255)).astype(np.uint8))
    gts.append(gt)
  return np.concatenate(levels), np.concatenate(gts)


def _probs(levels):
  """float32 probabilities whose png levels floor(255 p) (as the protocols quantize) are levels."""
  return np.minimum((levels.astype(np.float32) + np.float32(0.5)) / np.float32(255), 1)


def _pyedgeeval_counts(prob, gt, protocol):
  """pyEdgeEval 0.2.8's own evaluation of one image on the png-quantized map; counts [K, 4]."""
  from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold
  from pyEdgeEval.preprocess import binary_thin

  edges = np.floor(prob * np.float32(255)) / 255.0
  gt_b = binary_thin(gt == 1) if protocol.thin_gt else gt == 1
  counts = evaluate_boundaries_threshold(
      np.asarray(protocol.thresholds), edges, gt_b, max_dist=protocol.max_dist,
      apply_thinning=protocol.thin_prediction, apply_nms=protocol.nms)
  return np.stack(counts, axis=1).astype(np.int64)


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--images", type=int, default=654, help="number of images (NYUD val: 654)")
  parser.add_argument("--height", type=int, default=480)
  parser.add_argument("--width", type=int, default=640)
  parser.add_argument("--protocol", default=em.DEFAULT_PROTOCOL, choices=sorted(em.PROTOCOLS))
  parser.add_argument("--batch", type=int, default=8, help="images per edge_state call")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="processes of the pooled run (default: os.cpu_count())")
  parser.add_argument("--serial_images", type=int, default=64,
                      help="images of the serial run (0 = all); extrapolated to --images")
  parser.add_argument("--pyedgeeval_images", type=int, default=3,
                      help="images of the pyEdgeEval run (0 = skip); extrapolated to --images")
  args = parser.parse_args(argv)
  protocol = em.PROTOCOLS[args.protocol]
  n = args.images
  print(f"# {n} synthetic images {args.height}x{args.width}, protocol {protocol.name} "
        f"({len(protocol.thresholds)} thresholds, max_dist {protocol.max_dist}, "
        f"nms {protocol.nms})")
  print(f"# python {platform.python_version()}, numpy {np.__version__}, cpus {os.cpu_count()}, "
        f"workers {args.workers}, batch {args.batch}, load average {os.getloadavg()[0]:.2f}")

  # Inputs, before any timing, made in the pool edge_state reuses (which warms it up: spawned,
  # module imported).
  workers = args.workers if args.workers > 1 else None
  pool = em._get_pool(workers) if workers else None  # pylint: disable=protected-access
  t0 = time.perf_counter()
  jobs = [(s, min(args.batch, n - s), args.height, args.width) for s in range(0, n, args.batch)]
  batches = list(pool.map(_make_batch, jobs) if pool is not None else map(_make_batch, jobs))
  print(f"# inputs generated in {time.perf_counter() - t0:.1f} s (not timed below)")

  # Pooled, batch by batch as an evaluation loop calls it.
  state = em.empty_edge_state(protocol)
  pooled_s = 0.0
  for levels, gts in batches:
    probs = _probs(levels)
    t0 = time.perf_counter()
    state = em.merge_edge_states(state, em.edge_state(probs, gts, protocol, num_workers=workers))
    pooled_s += time.perf_counter() - t0
  result = em.finalize_edges(state, protocol)
  print(f"pooled ({args.workers} processes): {pooled_s:8.1f} s measured over {n} images "
        f"({pooled_s / n:.3f} s/image); odsF {result['odsF']:.2f} oisF {result['oisF']:.2f} "
        f"AP {result['ap']:.2f}")

  # Serial.
  m = n if args.serial_images <= 0 else min(args.serial_images, n)
  serial_s, done = 0.0, 0
  for levels, gts in batches:
    if done >= m:
      break
    levels, gts = levels[:m - done], gts[:m - done]
    probs = _probs(levels)
    t0 = time.perf_counter()
    em.edge_state(probs, gts, protocol)
    serial_s += time.perf_counter() - t0
    done += len(levels)
  note = "measured" if m == n else f"extrapolated from {serial_s:.1f} s measured over {m} images"
  print(f"serial (1 process):    {serial_s * n / m:8.1f} s {note} ({serial_s / m:.3f} s/image)")

  # pyEdgeEval.
  k = min(args.pyedgeeval_images, n)
  if k > 0:
    try:
      # pylint: disable-next=import-outside-toplevel
      from pyEdgeEval.common.metrics import interpolated_max_scores
    except ImportError as err:
      print(f"pyEdgeEval: not installed ({err}); pip install pyEdgeEval==0.2.8")
    else:
      levels = np.concatenate([b[0] for b in batches])[:k]
      gts = np.concatenate([b[1] for b in batches])[:k]
      probs = _probs(levels)
      ours = em.edge_state(probs, gts, protocol)
      theirs = np.zeros((len(protocol.thresholds), 4), np.int64)
      pee_s = 0.0
      for prob, gt in zip(probs, gts):
        t0 = time.perf_counter()
        theirs += _pyedgeeval_counts(prob, gt, protocol)
        pee_s += time.perf_counter() - t0
      prec, rec, f = em.edge_pr_curve({"ods_counts": theirs})
      interp = interpolated_max_scores(np.asarray(protocol.thresholds), rec, prec)[3]
      ours_f = em.finalize_edges(ours, protocol)["odsF"]
      print(f"pyEdgeEval (1 process): {pee_s * n / k:8.1f} s extrapolated from {pee_s:.1f} s "
            f"measured over {k} images ({pee_s / k:.3f} s/image); ideal {args.workers}-process "
            f"pool: {pee_s * n / k / args.workers:.1f} s")
      print(f"odsF over those {k} images: ours {ours_f:.2f}, pyEdgeEval max over thresholds "
            f"{100 * f.max():.2f} (its interpolated ODS {100 * interp:.2f})")
  em.shutdown_pools()
  return 0


if __name__ == "__main__":
  sys.exit(main())
