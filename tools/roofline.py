"""Roofline of a config's train step on named accelerators: a bound from XLA's cost analysis, not a
measurement.

    python tools/roofline.py --config configs/demo.py
    python tools/roofline.py --config configs/nyud_hrnet18.py --config.dataset.data_dir=/data/nyuv2 \\
        --config.compute_dtype=bfloat16 --top 12 --json /tmp/roofline.json

Builds the config's own run (``run_parts.build_run``: model, regularizer, task weighting,
optimizer, image and batch size; its data must be readable, one batch is read), lowers ONE train
step (``train.bound_train_step``; ``steps_per_call`` does not change a step's work) with the
accelerators' convolution implementation (``--conv_impl xla``: what "auto" picks off the CPU), and
compiles it here. From that it reports:

* **XLA's cost analysis** of the compiled step (``jax.stages.Compiled.cost_analysis``): FLOPs,
  transcendentals and bytes accessed. The bytes are those of the program XLA compiled for THIS
  backend (its fusion decisions); XLA on a GPU or TPU fuses differently, so they are an estimate of
  an accelerator's traffic, not a bound.
* **Where the FLOPs go**, from the step's jaxpr (analytic: 2·M·N·K per matmul, 2 · output elements ·
  kernel window · input channels per group per convolution, one per output element of the
  elementwise ops), grouped by Flax module path with digits folded to ``#`` (forward and backward
  apart) or, for code outside a module, by the function that issued it (e.g. ``gaussian.py:w2_squared``): the top ``--top``.
* **Per accelerator** (``ACCELERATORS``: peak FLOP/s and HBM bandwidth from the vendors' data
  sheets, cited there): compute time = FLOPs / peak (a strict lower bound on one chip: no chip runs
  the step's FLOPs faster), memory time = XLA's bytes / bandwidth (an estimate, see above), the
  roofline estimate max(compute, memory), the images/s it allows, and the MFU ceiling it implies
  (FLOPs / (estimate · peak)). The peak is the one JAX's default precision uses for
  ``config.compute_dtype``: bfloat16 → the bf16 tensor peak; float32 → TF32 on A100 / H100 (XLA's
  default for float32 matmuls and convolutions there) and the bf16 MXU peak on TPUs (DEFAULT
  precision: one bf16 pass).

One chip processing the config's global batch; on n chips with data parallelism divide the times
by n and add the gradient all-reduce (about 2 · parameter bytes over the interconnect), which this
tool does not model. Nothing here ran on an accelerator.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import re
import sys
from typing import Any

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtjax import runtime  # noqa: E402,F401  (before TensorFlow: quiets its C++ banners)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax._src import source_info_util  # noqa: E402  (user_frame: where an op was issued)

from mtjax import run_parts, train  # noqa: E402

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """One chip's data-sheet peaks: dense FLOP/s per dtype of JAX's default precision, HBM B/s."""

  name: str
  peak_flops: dict[str, float]  # {"bfloat16": FLOP/s, "float32": FLOP/s}, dense (no sparsity).
  hbm_bytes_per_s: float
  source: str


# Dense peaks (the data sheets print the 2:4-sparsity figures with an asterisk: half of them here).
ACCELERATORS = {
    "a100": Accelerator(
        "NVIDIA A100 SXM4 80GB",
        {"bfloat16": 312e12, "float32": 156e12},  # BF16 / TF32 Tensor Core.
        2039e9,  # HBM2e.
        "NVIDIA A100 Tensor Core GPU data sheet (nvidia-a100-datasheet-us-nvidia-1758950-r4)",
    ),
    "h100": Accelerator(
        "NVIDIA H100 SXM5",
        {"bfloat16": 989.5e12, "float32": 494.5e12},  # 1,979 / 989 TFLOPS with sparsity.
        3.35e12,  # HBM3.
        "NVIDIA H100 Tensor Core GPU data sheet (H100 SXM column)",
    ),
    "tpu_v4": Accelerator(
        "Google Cloud TPU v4 (one chip, two TensorCores)",
        {"bfloat16": 275e12, "float32": 275e12},
        1200e9,
        "https://cloud.google.com/tpu/docs/v4 (275 TFLOPS bf16, HBM2 32 GiB at 1,200 GBps)",
    ),
    "tpu_v5e": Accelerator(
        "Google Cloud TPU v5e (one chip)",
        {"bfloat16": 197e12, "float32": 197e12},
        819e9,
        "https://cloud.google.com/tpu/docs/v5e (197 TFLOPS bf16, HBM2 16 GB at 819 GBps)",
    ),
}

# Primitives counted as one FLOP per output element (the rest of the elementwise and data
# movement ops count none; reductions count their input elements).
_ELEMENTWISE = frozenset(
    "add sub mul div neg max min abs sign exp exp2 log log1p expm1 tanh logistic sqrt rsqrt cbrt "
    "pow integer_pow sin cos tan atan2 erf erf_inv erfc square select_n clamp add_any rem "
    "floor ceil round is_finite".split()
)
_REDUCTIONS = frozenset("reduce_sum reduce_max reduce_min reduce_prod argmax argmin".split())


def _size(aval) -> int:
  return int(np.prod(aval.shape)) if hasattr(aval, "shape") else 0


def _nbytes(aval) -> int:
  return _size(aval) * np.dtype(aval.dtype).itemsize if hasattr(aval, "dtype") else 0


def eqn_flops(eqn) -> float:
  """Analytic FLOPs of one jaxpr equation (multiply-add = 2), without sub-jaxprs.

  dot_general: 2 · output elements · contracted size; conv_general_dilated: 2 · output elements ·
  kernel window · kernel input features (already per feature group); elementwise ops (``_ELEMENTWISE``):
  one per output element; reductions: one per input element; everything else 0.
  """
  name = eqn.primitive.name
  out = eqn.outvars[0].aval
  if name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    k = math.prod(eqn.invars[0].aval.shape[d] for d in lhs_contract)
    return 2.0 * _size(out) * k
  if name == "conv_general_dilated":
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, spatial...)
    rhs = eqn.invars[1].aval.shape
    window = math.prod(rhs[d] for d in rhs_spec[2:])
    return 2.0 * _size(out) * window * rhs[rhs_spec[1]]
  if name in _ELEMENTWISE:
    return float(_size(out))
  if name in _REDUCTIONS:
    return float(_size(eqn.invars[0].aval))
  return 0.0


def _sub_jaxprs(eqn):
  """(jaxpr, multiplicity) of the jaxprs an equation runs: a scan's body `length` times, one branch
  of a cond (the costliest is taken by the caller), the rest once."""
  for value in eqn.params.values():
    for sub in value if isinstance(value, (tuple, list)) else (value,):
      inner = getattr(sub, "jaxpr", sub)
      if hasattr(inner, "eqns"):
        yield inner, (eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1)


def _scope(name_stack: str, eqn) -> str:
  """A Flax module path with digits folded to '#' (so the like layers of all stages add up;
  'backward' where autodiff transposed it) or, for code outside modules, file:function of the user
  frame that issued the op."""
  backward = "transpose(" in name_stack
  parts = [p for p in name_stack.split("/") if p]
  while parts and re.match(r"(?:jvp|transpose|jit|pjit|vmap|remat|checkpoint)\(", parts[0]):
    inner = re.sub(r"^(?:\w+\()+", "", parts[0]).rstrip(")")  # transpose(jvp(Mod)) -> Mod
    parts = ([inner] if inner and not inner.startswith("...") else []) + parts[1:]
  module = re.sub(r"\d+", "#", "/".join(parts))  # Like layers of all stages add up.
  if not module or not module[0].isupper():
    frame = source_info_util.user_frame(eqn.source_info.traceback)
    module = f"{os.path.basename(frame.file_name)}:{frame.function_name}" if frame else "?"
  return f"{module} (backward)" if backward else module


def jaxpr_flops_by_scope(jaxpr) -> dict[str, float]:
  """{scope: analytic FLOPs} of a (closed) jaxpr and every jaxpr inside it (scan bodies times
  their length; a cond's costliest branch), scopes as ``_scope``."""
  totals: dict[str, float] = collections.defaultdict(float)

  def walk(j, prefix: str, times: float) -> None:
    for eqn in j.eqns:
      stack = str(eqn.source_info.name_stack)
      full = "/".join(p for p in (prefix, stack) if p)
      subs = list(_sub_jaxprs(eqn))
      if eqn.primitive.name == "cond" and subs:
        best = max(subs, key=lambda s: sum(jaxpr_flops_by_scope(s[0]).values()))
        subs = [best]
      for inner, n in subs:
        walk(inner, full, times * n)
      if not subs:
        flops = eqn_flops(eqn)
        if flops:
          totals[_scope(full, eqn)] += times * flops

  walk(getattr(jaxpr, "jaxpr", jaxpr), "", 1.0)
  return dict(totals)


def xla_costs(compiled) -> dict[str, float]:
  """{"flops", "transcendentals", "bytes_accessed"} of a compiled executable (XLA's HLO cost
  analysis; a list of per-device dicts on older JAX, one dict on newer).

  Raises:
    ValueError: this backend's XLA reports no cost analysis.
  """
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    raise ValueError(f"XLA reported no cost analysis here ({analysis!r}); expected 'flops'.")
  return {
      "flops": float(analysis["flops"]),
      "transcendentals": float(analysis.get("transcendentals", 0.0)),
      "bytes_accessed": float(analysis.get("bytes accessed", 0.0)),
  }


def roofline(flops: float, bytes_accessed: float, accelerator: Accelerator, dtype: str) -> dict:
  """Compute and memory times (s) of one step on `accelerator` and what they imply.

  Returns {"peak_flops", "compute_s" (FLOPs / peak: a strict lower bound), "memory_s" (bytes /
  bandwidth), "estimate_s" (their max: the roofline), "bound_by" ("compute" | "memory"),
  "mfu_ceiling" (FLOPs / (estimate · peak), in [0, 1])}.

  Raises:
    ValueError: a dtype the accelerator has no peak for.
  """
  if dtype not in accelerator.peak_flops:
    raise ValueError(f"compute dtype {dtype!r}: expected one of {sorted(accelerator.peak_flops)}")
  peak = accelerator.peak_flops[dtype]
  compute_s, memory_s = flops / peak, bytes_accessed / accelerator.hbm_bytes_per_s
  estimate_s = max(compute_s, memory_s)
  return {
      "peak_flops": peak,
      "compute_s": compute_s,
      "memory_s": memory_s,
      "estimate_s": estimate_s,
      "bound_by": "compute" if compute_s >= memory_s else "memory",
      "mfu_ceiling": flops / (estimate_s * peak) if estimate_s > 0 else 0.0,
  }


def analyze(config, accelerators=tuple(ACCELERATORS), top: int = 12) -> dict[str, Any]:
  """The report of the module docstring for `config` (its data must be readable): a JSON-able
  dict {"model", "batch_shape", "compute_dtype", "xla", "jaxpr_flops", "by_scope" [[scope,
  FLOPs]] (top `top`), "accelerators" {name: roofline(...) + "images_per_s"}}.

  Raises:
    KeyError: an unknown accelerator name (expected keys of ``ACCELERATORS``); as
    ``run_parts.build_run`` for a bad config or unreadable data.
  """
  unknown = [a for a in accelerators if a not in ACCELERATORS]
  if unknown:
    raise KeyError(f"unknown accelerators {unknown}: expected some of {sorted(ACCELERATORS)}")
  parts = run_parts.build_run(config)
  step = train.bound_train_step(
      config, parts.model, parts.tx, parts.regularizer, parts.task_weighting
  )
  batch = next(run_parts.train_batches(config, parts))
  compiled = jax.jit(step).lower(parts.state, batch).compile()
  xla = xla_costs(compiled)
  by_scope = jaxpr_flops_by_scope(jax.make_jaxpr(step)(parts.state, batch))
  images = int(batch["image"].shape[0])
  rows = {}
  for name in accelerators:
    row = roofline(xla["flops"], xla["bytes_accessed"], ACCELERATORS[name], config.compute_dtype)
    rows[name] = {**row, "images_per_s": images / row["estimate_s"]}
  return {
      "model": config.model.name,
      "regularizer": config.regularizer.name,
      "batch_shape": list(batch["image"].shape),
      "compute_dtype": config.compute_dtype,
      "conv_impl": config.model.conv_impl,
      "backend": jax.default_backend(),
      "xla": xla,
      "jaxpr_flops": sum(by_scope.values()),
      "by_scope": sorted(by_scope.items(), key=lambda kv: -kv[1])[:top],
      "accelerators": rows,
  }


def format_report(report: dict) -> str:
  """The report as text tables (Markdown)."""
  xla, total = report["xla"], report["jaxpr_flops"]
  lines = [
      f"{report['model']} (regularizer {report['regularizer']}), batch {report['batch_shape']}, "
      f"{report['compute_dtype']}, conv_impl {report['conv_impl']}; one train step compiled on "
      f"{report['backend']}: XLA {xla['flops'] / 1e9:.2f} GFLOP, {xla['bytes_accessed'] / 1e9:.3f} "
      f"GB accessed, {xla['transcendentals'] / 1e6:.2f} M transcendentals; jaxpr (analytic) "
      f"{total / 1e9:.2f} GFLOP.",
      "",
      "| scope (jaxpr) | GFLOP | share |",
      "|---|---:|---:|",
  ]
  for scope, flops in report["by_scope"]:
    lines.append(f"| {scope} | {flops / 1e9:.3f} | {flops / total * 100:.1f} % |")
  lines += [
      "",
      "| accelerator | peak TFLOP/s | HBM GB/s | compute ms (bound) | memory ms (est.) | roofline "
      "ms | images/s ≤ | MFU ceiling |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for name, row in report["accelerators"].items():
    acc = ACCELERATORS[name]
    lines.append(
        f"| {acc.name} | {row['peak_flops'] / 1e12:.0f} | {acc.hbm_bytes_per_s / 1e9:.0f} | "
        f"{row['compute_s'] * 1e3:.3f} | {row['memory_s'] * 1e3:.3f} | {row['estimate_s'] * 1e3:.3f}"
        f" ({row['bound_by']}) | {row['images_per_s']:.0f} | {row['mfu_ceiling'] * 100:.0f} % |"
    )
  lines += ["", "Sources: " + "; ".join(f"{a.name}: {a.source}" for a in ACCELERATORS.values())]
  return "\n".join(lines)


def _define_flags() -> None:
  config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
  flags.DEFINE_list("accelerators", list(ACCELERATORS), f"some of {sorted(ACCELERATORS)}")
  flags.DEFINE_integer("top", 12, "scopes listed by FLOPs")
  flags.DEFINE_string("conv_impl", "xla", "config.model.conv_impl to compile with ('xla': GPU/TPU)")
  flags.DEFINE_string("json", None, "also write the report to this JSON file")
  flags.mark_flags_as_required(["config"])


def main(argv) -> None:
  del argv
  config = FLAGS.config
  with config.unlocked():
    config.model.conv_impl = FLAGS.conv_impl
  report = analyze(config, tuple(FLAGS.accelerators), FLAGS.top)
  print(format_report(report))
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
