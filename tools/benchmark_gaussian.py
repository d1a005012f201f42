"""Times the pairwise W2 InfoNCE of region-aware distribution contrast, forward + backward.

    python tools/benchmark_gaussian.py                      # mtjax, every method, and PyTorch
    python tools/benchmark_gaussian.py --regions 32 --dims 32 --covariances full --rounds 5

One image pair: two feature maps [B, H, W, D] (default 72x96, stride 4 of 288x384) and one region
map with R regions; per map, ``region_gaussians``; then the R x R squared W2 distances between the
two maps' regions and the InfoNCE over them (region i of one map against every region of the
other, positive i; docs/methods.md); gradients with respect to both feature maps. Each case runs in
its own subprocess, so that its peak memory is its own: ``peak MiB`` is the growth of the process's
maximum resident set over the case (inputs, compilation, the timed steps). For mtjax, ``XLA temp
MiB`` is the compiled program's scratch memory (``memory_analysis``). A case runs in ``--rounds``
rounds, each running every implementation once (``--repeats`` timed steps after a warm-up),
alternating, and ``ms`` is the median over all rounds' steps: the machine's speed drifts by tens
of percent over minutes, and alternating puts that drift on every implementation alike.

The PyTorch column (``torch_eigh``) is the straightforward version of the same math: one-hot region
moments, ``torch.linalg.eigh`` square roots, ``torch.linalg.eigvalsh`` for every pair's
Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}). It needs torch (``pip install -e ".[bench]"``; the CPU wheel
is torch==2.13.0); without it, pass ``--no_torch``. ``speedup`` is the PyTorch time over each
row's time, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

EPS = 1e-4
ATTEMPTS = 3  # A case that has not finished within --case_timeout seconds is run again.


def make_inputs(batch: int, height: int, width: int, num_regions: int, dim: int, seed: int = 0):
  """Two float32 feature maps [B, H, W, D] and an int32 region map [B, H, W] of blob-shaped regions
  (nearest of R random centres, as SAM's masks tile an image), each region's features offset so the
  regions differ, as mapped features of real regions do."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:height, :width]
  ids = np.empty((batch, height, width), np.int32)
  for b in range(batch):
    centres = rng.uniform((0, 0), (height, width), (num_regions, 2))
    dist = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    ids[b] = dist.argmin(-1)
  offsets = rng.normal(0.0, 0.3, (batch, num_regions, dim))
  region_offset = np.take_along_axis(offsets, ids.reshape(batch, -1, 1), axis=1)
  region_offset = region_offset.reshape(batch, height, width, dim)
  maps = [
      (region_offset + rng.normal(0.0, 0.5, (batch, height, width, dim))).astype(np.float32)
      for _ in range(2)
  ]
  return maps[0], maps[1], ids


def infonce(neg_distance, counts, xp, logsumexp):
  """Mean over valid regions i of −log softmax_j(−W2[i, j] / τ)[i], τ = R (the number of
  regions, the last axis); ``xp`` = jnp or torch."""
  valid = counts > 0
  logits = neg_distance / neg_distance.shape[-1]
  logits = xp.where(valid[..., None, :], logits, xp.full_like(logits, -1e30))
  nll = logsumexp(logits) - xp.diagonal(logits, 0, -2, -1)
  return xp.sum(xp.where(valid, nll, xp.zeros_like(nll))) / xp.sum(valid)


# --------------------------------------------------------------------------------------------
# mtjax
# --------------------------------------------------------------------------------------------


def _compiled_case(loss, pairwise, features_t, features_s, ids, num_regions, covariance):
  """(run, extra) of a jitted JAX case: extra holds the compiled program's scratch MiB and the
  largest relative error of its W2 matrix against SciPy's float64 ``sqrtm`` on the same region
  Gaussians (first image pair)."""
  import jax
  import jax.numpy as jnp
  import scipy.linalg

  from mtjax.ops import gaussian

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  args = (jnp.asarray(features_t), jnp.asarray(features_s))
  compiled = step.lower(*args).compile()
  memory = compiled.memory_analysis()
  temp_mib = memory.temp_size_in_bytes / 2**20 if memory is not None else float("nan")

  kw = dict(covariance=covariance, eps=EPS)
  gt = [gaussian.region_gaussians(f[:1], ids[:1], num_regions, **kw) for f in args]
  (mean_t, cov_t, counts), (mean_s, cov_s, _) = gt
  w2 = np.asarray(jax.jit(pairwise)(mean_t, cov_t, mean_s, cov_s))[0]
  ma, mb = np.asarray(mean_t, np.float64)[0], np.asarray(mean_s, np.float64)[0]
  ca, cb = np.asarray(cov_t, np.float64)[0], np.asarray(cov_s, np.float64)[0]
  if covariance == "diag":
    ref = ((ma[:, None] - mb[None]) ** 2).sum(-1) + (
        (np.sqrt(ca)[:, None] - np.sqrt(cb)[None]) ** 2
    ).sum(-1)
  else:
    roots = [np.real(scipy.linalg.sqrtm(c)) for c in ca]
    ref = np.array(
        [
            [
                ((ma[i] - mb[j]) ** 2).sum()
                + np.trace(ca[i])
                + np.trace(cb[j])
                - 2 * np.trace(np.real(scipy.linalg.sqrtm(roots[i] @ cb[j] @ roots[i])))
                for j in range(len(cb))
            ]
            for i in range(len(ca))
        ]
    )
  valid = np.asarray(counts)[0] > 0
  pair = valid[:, None] & valid[None]
  rel_err = float(np.max(np.abs(w2 - ref)[pair] / np.maximum(np.abs(ref)[pair], 1e-12)))

  def run():
    value, grads = compiled(*args)
    jax.block_until_ready(grads)
    return float(value)

  return run, {"xla_temp_mib": temp_mib, "w2_rel_err": rel_err}


def mtjax_case(features_t, features_s, ids, num_regions, covariance, method):
  import jax
  import jax.numpy as jnp

  from mtjax.ops import gaussian

  def pairwise(mean_t, cov_t, mean_s, cov_s):
    return gaussian.pairwise_wasserstein2(mean_t, cov_t, mean_s, cov_s, sqrt_method=method)

  def loss(ft, fs):
    kw = dict(covariance=covariance, eps=EPS)
    mean_t, cov_t, counts = gaussian.region_gaussians(ft, ids, num_regions, **kw)
    mean_s, cov_s, _ = gaussian.region_gaussians(fs, ids, num_regions, **kw)
    w2 = pairwise(mean_t, cov_t, mean_s, cov_s)
    return infonce(-w2, counts, jnp, lambda x: jax.nn.logsumexp(x, axis=-1))

  return _compiled_case(loss, pairwise, features_t, features_s, ids, num_regions, covariance)


def ott_case(features_t, features_s, ids, num_regions, covariance):
  """The same loss with ott-jax's square roots (``ott.math.matrix_square_root.sqrtm``: Newton–
  Schulz to a relative threshold, implicit differentiation) in place of mtjax's cross term: Σ_a^{1/2}
  once per Gaussian, then Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}) per pair; mtjax's region moments."""
  import jax
  import jax.numpy as jnp
  from ott.math import matrix_square_root

  from mtjax.ops import gaussian

  if covariance != "full":
    raise ValueError("ott: full covariances only (the diagonal W2 has no square roots)")

  def sqrtm(x):
    return matrix_square_root.sqrtm(x)[0]

  def pairwise(mean_t, cov_t, mean_s, cov_s):
    root_t = jax.vmap(jax.vmap(sqrtm))(cov_t)  # [B, R, D, D]
    inner = root_t[:, :, None] @ cov_s[:, None] @ root_t[:, :, None]  # [B, R, R, D, D]
    cross = jnp.trace(jax.vmap(jax.vmap(jax.vmap(sqrtm)))(inner), axis1=-2, axis2=-1)
    mean_term = jnp.sum(jnp.square(mean_t[:, :, None] - mean_s[:, None]), -1)
    tr_t = jnp.trace(cov_t, axis1=-2, axis2=-1)
    tr_s = jnp.trace(cov_s, axis1=-2, axis2=-1)
    return mean_term + tr_t[:, :, None] + tr_s[:, None] - 2 * cross

  def loss(ft, fs):
    mean_t, cov_t, counts = gaussian.region_gaussians(ft, ids, num_regions, eps=EPS)
    mean_s, cov_s, _ = gaussian.region_gaussians(fs, ids, num_regions, eps=EPS)
    w2 = pairwise(mean_t, cov_t, mean_s, cov_s)
    return infonce(-w2, counts, jnp, lambda x: jax.nn.logsumexp(x, axis=-1))

  return _compiled_case(loss, pairwise, features_t, features_s, ids, num_regions, covariance)


# --------------------------------------------------------------------------------------------
# PyTorch: the straightforward version
# --------------------------------------------------------------------------------------------


def torch_case(features_t, features_s, ids, num_regions, covariance):
  import torch

  def moments(f, region_ids):
    batch, dim = f.shape[0], f.shape[-1]
    f = f.reshape(batch, -1, dim)
    region_ids = region_ids.reshape(batch, -1)
    onehot = torch.nn.functional.one_hot(region_ids.clamp(min=0), num_regions).to(f.dtype)
    onehot = onehot * (region_ids >= 0)[..., None]
    counts = onehot.sum(1)
    denom = counts.clamp(min=1)[..., None]
    means = onehot.transpose(1, 2) @ f / denom
    centred = f - onehot @ means
    if covariance == "diag":
      return means, onehot.transpose(1, 2) @ centred**2 / denom + EPS, counts
    covs = torch.einsum("bpr,bpd,bpe->brde", onehot, centred, centred) / denom[..., None]
    return means, covs + EPS * torch.eye(dim), counts

  def sqrtm(c):
    w, v = torch.linalg.eigh(c)
    return v @ torch.diag_embed(w.clamp(min=0).sqrt()) @ v.transpose(-1, -2)

  def pairwise_w2(ma, ca, mb, cb):
    mean_term = ((ma[:, :, None] - mb[:, None]) ** 2).sum(-1)
    if covariance == "diag":
      return mean_term + ((ca[:, :, None].sqrt() - cb[:, None].sqrt()) ** 2).sum(-1)
    ra = sqrtm(ca)[:, :, None]
    inner = ra @ cb[:, None] @ ra
    cross = torch.linalg.eigvalsh(inner).clamp(min=0).sqrt().sum(-1)
    tr_a = ca.diagonal(0, -2, -1).sum(-1)
    tr_b = cb.diagonal(0, -2, -1).sum(-1)
    return (mean_term + tr_a[:, :, None] + tr_b[:, None] - 2 * cross).clamp(min=0)

  region_ids = torch.from_numpy(ids).long()
  ft = torch.from_numpy(features_t).requires_grad_()
  fs = torch.from_numpy(features_s).requires_grad_()

  def run():
    ft.grad = fs.grad = None
    mean_t, cov_t, counts = moments(ft, region_ids)
    mean_s, cov_s, _ = moments(fs, region_ids)
    neg_w2 = -pairwise_w2(mean_t, cov_t, mean_s, cov_s)
    loss = infonce(neg_w2, counts, torch, lambda x: torch.logsumexp(x, -1))
    loss.backward()
    return float(loss)

  return run, {"torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def max_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB.


def worker(args) -> dict:
  """One case in this process; prints one JSON line."""
  rss0 = max_rss_mib()
  inputs = make_inputs(args.batch, args.height, args.width, args.case_regions, args.case_dim)
  if args.case_impl == "torch_eigh":
    run, extra = torch_case(*inputs, args.case_regions, args.case_covariance)
  elif args.case_impl == "ott":
    run, extra = ott_case(*inputs, args.case_regions, args.case_covariance)
  else:
    run, extra = mtjax_case(*inputs, args.case_regions, args.case_covariance, args.case_impl)
  loss = run()  # Warm-up (and, for torch, the first-call allocations).
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return {
      "impl": args.case_impl,
      "covariance": args.case_covariance,
      "R": args.case_regions,
      "D": args.case_dim,
      "times_ms": [1e3 * t for t in times],
      "peak_mib": max_rss_mib() - rss0,
      "loss": loss,
      **extra,
  }


def run_case(args, row: dict, num_regions: int, dim: int, covariance: str) -> dict | None:
  """One round of one case in a fresh process: the worker's result, or None if it hung in every
  attempt (``row["hung"]`` counts the attempts)."""
  cmd = [sys.executable, os.path.abspath(__file__), "--case_impl", row["impl"]]
  cmd += ["--case_covariance", covariance, "--case_regions", str(num_regions)]
  cmd += ["--case_dim", str(dim), "--batch", str(args.batch), "--height", str(args.height)]
  cmd += ["--width", str(args.width), "--repeats", str(args.repeats)]
  for _ in range(ATTEMPTS):
    try:
      out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.case_timeout)
    except subprocess.TimeoutExpired:
      row["hung"] += 1
      continue
    if out.returncode:
      sys.exit(f"case {row['impl']} {covariance} R={num_regions} D={dim} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
  return None


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--regions", default="16,32,64", help="R values")
  parser.add_argument("--dims", default="16,32,64", help="D values")
  parser.add_argument("--covariances", default="full,diag")
  parser.add_argument(
      "--methods",
      default="newton_schulz,eigh",
      help="mtjax sqrt_method values, and 'ott' (ott-jax's sqrtm, pip install ott-jax)",
  )
  parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
  parser.add_argument("--batch", type=int, default=1, help="image pairs per step")
  parser.add_argument("--height", type=int, default=72)
  parser.add_argument("--width", type=int, default=96)
  parser.add_argument(
      "--repeats", type=int, default=5, help="timed steps per round, after one warm-up"
  )
  parser.add_argument(
      "--rounds",
      type=int,
      default=3,
      help="rounds per case, each running every implementation once in its own process, "
      "alternating, so that the machine's drift falls on all of them alike",
  )
  parser.add_argument("--json", default="", help="also write the rows to this file")
  parser.add_argument(
      "--case_timeout",
      type=float,
      default=600.0,
      help=f"seconds before a case counts as hung and is retried ({ATTEMPTS} attempts in all)",
  )
  for name in ("impl", "covariance"):
    parser.add_argument(f"--case_{name}", default="", help=argparse.SUPPRESS)
  for name in ("regions", "dim"):
    parser.add_argument(f"--case_{name}", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.case_impl:
    print(json.dumps(worker(args)))
    return

  impls = args.methods.split(",")
  if not args.no_torch:
    try:
      import torch  # noqa: F401
    except ImportError:
      sys.exit('PyTorch is not installed: pip install -e ".[bench]", or pass --no_torch')
    impls.append("torch_eigh")
  import jax

  print(
      f"# {cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__} on {jax.default_backend()}"
  )
  print(
      f"# B={args.batch}, features {args.height}x{args.width}, median of {args.rounds} rounds "
      f"x {args.repeats} steps",
      flush=True,
  )
  header = (
      "| cov | R | D | impl | ms fwd+bwd | speedup vs torch | peak MiB | XLA temp MiB "
      "| W2 max rel. err |"
  )
  print(header, flush=True)
  print("|---|---|---|---|---|---|---|---|---|", flush=True)
  rows = []
  for covariance in args.covariances.split(","):
    for num_regions in (int(r) for r in args.regions.split(",")):
      for dim in (int(d) for d in args.dims.split(",")):
        impls_here = [
            impl
            for impl in impls
            # The diagonal W2 has no square roots: one mtjax row suffices.
            if not (covariance == "diag" and impl in ("eigh", "ott"))
        ]
        case = [
            {"impl": impl, "covariance": covariance, "R": num_regions, "D": dim, "hung": 0}
            for impl in impls_here
        ]
        times = {impl: [] for impl in impls_here}
        for _ in range(args.rounds):
          for row in case:
            result = run_case(args, row, num_regions, dim, covariance)
            if result is None:
              continue
            times[row["impl"]] += result.pop("times_ms")
            peak = max(row.get("peak_mib", 0.0), result["peak_mib"])
            row.update(result, peak_mib=peak)
        for row in case:
          if times[row["impl"]]:
            row["ms"] = statistics.median(times[row["impl"]])
            row["steps"] = len(times[row["impl"]])
        reference = next((r.get("ms") for r in case if r["impl"] == "torch_eigh"), None)
        for row in case:
          hung = f" (hung {row['hung']}x)" if row["hung"] else ""
          if "ms" not in row:
            print(
                f"| {covariance} | {num_regions} | {dim} | {row['impl']} | never finished{hung} "
                "| - | - | - | - |",
                flush=True,
            )
            continue
          row["speedup"] = reference / row["ms"] if reference else None
          speedup = f"{row['speedup']:.1f}x" if reference else "-"
          temp = f"{row['xla_temp_mib']:.1f}" if "xla_temp_mib" in row else "-"
          err = f"{row['w2_rel_err']:.1e}" if "w2_rel_err" in row else "-"
          print(
              f"| {covariance} | {num_regions} | {dim} | {row['impl']} | {row['ms']:.1f}{hung} | "
              f"{speedup} | {row['peak_mib']:.0f} | {temp} | {err} |",
              flush=True,
          )
        rows.extend(case)
  if args.json:
    from mtjax import fileio  # pylint: disable=g-import-not-at-top

    fileio.write_atomic(args.json, json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
