"""Where a config's train step spends its time on this backend: one profiled call, its XLA ops
grouped by JAX primitive and by layer.

    python tools/profile_train_step.py --config configs/nyud_hrnet18.py \\
        --config.dataset.data_dir=/path/to/nyuv2 --top 15

Builds the config's own run (``run_parts.build_run``, its data and sizes), compiles one call of its
``steps_per_call`` steps (``calls.make_call``, as training runs it), runs it once to warm up and once
under ``jax.profiler`` (a Perfetto trace), and attributes every XLA op's time in the trace to the
compiled instruction of that name and its metadata (``op_name``: the Flax module path and the JAX
primitive that produced it; "backward" where autodiff transposed it). Prints the call's wall time
and four tables of op time: by primitive (conv_general_dilated, dot_general, reduce_sum, ...: a
fusion counts as its root's primitive), by scope (the layer's first part: the model, a regularizer's
mapping, moments or contrast; forward and backward apart), by layer (module path with digits
folded to ``#``, so the like layers of all stages add up), and the top instructions with their
output shapes. Op times are the trace's, summed over all threads (XLA:CPU runs independent ops
concurrently, so their sum can exceed the wall time).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtjax import runtime  # noqa: E402,F401  (before TensorFlow: quiets its C++ banners)

import jax  # noqa: E402

from mtjax import calls, sharding, train  # noqa: E402

FLAGS = flags.FLAGS

# "%name = f32[2,3]{1,0} opcode(...), ..., metadata={op_name="jit(f)/jvp(M)/conv/conv_general_dilated" ..."
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%?(?P<name>[\w.\-]+) = (?P<shape>\S+(?: \S+\))?|\([^=]*?\)) (?P<opcode>[\w\-]+)\("
)
_CONTROL_FLOW = frozenset({"while", "body", "cond", "closed_call", "scan", "checkpoint", "remat"})
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]*)"')


def instruction_metadata(hlo_text: str) -> dict[str, dict[str, str]]:
  """{instruction name: {"opcode", "shape", "op_name"}} of every instruction in a compiled HLO
  module's text (``jax.stages.Compiled.as_text``); op_name is "" where XLA kept no metadata."""
  out = {}
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      meta = _OP_NAME.search(line)
      out[m["name"]] = {
          "opcode": m["opcode"],
          "shape": m["shape"],
          "op_name": meta["op_name"] if meta else "",
      }
  return out


def classify(op_name: str, opcode: str) -> tuple[str, str]:
  """(primitive, layer) of an instruction from its metadata: primitive = the op_name's last part
  (the opcode where there is no metadata) + " (backward)" under autodiff's transpose; layer = the
  module path under the model (jvp/transpose wrappers dropped) with digits folded to "#"."""
  if not op_name:
    return opcode, "(no metadata)"
  parts = [p for p in op_name.split("/") if p]
  backward = any(p.startswith("transpose(") for p in parts)
  primitive = parts[-1] + (" (backward)" if backward else "")
  path = []
  for p in parts[1:-1]:  # Drop jit(...) and the primitive.
    inner = re.sub(r"^(?:\w+\()+", "", p).rstrip(")")
    if inner and not inner.startswith("...") and inner not in _CONTROL_FLOW:
      path.append(inner)
  layer = re.sub(r"\d+", "#", "/".join(path)) or "(top level)"
  return primitive, layer


def scope(primitive: str, layer: str) -> str:
  """The layer's first part (``classify``'s layer up to its first "/"), with " (backward)" where
  the primitive is autodiff's transpose: "HRNetMTL (backward)", "rdc_mapping", "(no metadata)"."""
  return layer.split("/")[0] + (" (backward)" if primitive.endswith(" (backward)") else "")


def op_times(trace_path: str, names) -> dict[str, float]:
  """{instruction name: total µs} of the complete ("X") events of a Perfetto trace whose name is
  an instruction of `names`."""
  with gzip.open(trace_path, "rt") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  totals = collections.defaultdict(float)
  for e in events:
    if e.get("ph") == "X" and e.get("name") in names:
      totals[e["name"]] += float(e.get("dur", 0.0))
  return dict(totals)


def profile(config, top: int = 15, report=print) -> dict:
  """Profiles one call of `config`'s train step (module docstring); returns {"wall_s",
  "steps_per_call", "op_us", "by_primitive" {primitive: µs}, "by_scope" {scope: µs} (``scope``),
  "by_layer" {layer: µs}, "top"
  [(instruction, µs, primitive, layer, shape)]}.

  Raises:
    FileNotFoundError: the profiler wrote no Perfetto trace; as ``run_parts.build_run``.
  """
  parts, step, batches = train.step_of_run(config)
  n = len(batches)
  if n == 1:
    jitted = calls.jit_step(step, parts.mesh)
    args = (parts.state, sharding.global_batch(parts.mesh, batches[0]))
  else:
    jitted = calls.jit_steps(step, parts.mesh)
    args = (parts.state, sharding.global_batches(parts.mesh, batches))
  compiled = jitted.lower(*args).compile()
  meta = instruction_metadata(compiled.as_text())
  state, metrics = compiled(*args)  # Warm-up (the state is donated).
  jax.block_until_ready(metrics)
  with tempfile.TemporaryDirectory() as log_dir:
    jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
    t0 = time.perf_counter()
    state, metrics = compiled(state, args[1])
    jax.block_until_ready((state, metrics))
    wall = time.perf_counter() - t0
    jax.profiler.stop_trace()
    traces = glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not traces:
      raise FileNotFoundError(f"jax.profiler wrote no perfetto_trace.json.gz under {log_dir}")
    times = op_times(traces[0], meta)
  by_primitive, by_scope, by_layer = (collections.Counter() for _ in range(3))
  rows = []
  for name, us in times.items():
    primitive, layer = classify(meta[name]["op_name"], meta[name]["opcode"])
    by_primitive[primitive] += us
    by_scope[scope(primitive, layer)] += us
    by_layer[layer] += us
    rows.append((name, us, primitive, layer, meta[name]["shape"]))
  total = sum(times.values())
  report(
      f"{config.model.name} (regularizer {config.regularizer.name}), batch "
      f"{batches[0]['image'].shape}, {n} steps per call: {wall * 1e3 / n:.1f} ms/step wall; op time "
      f"{total / 1e3 / n:.1f} ms/step over {len(times)} instructions"
  )
  for title, table in (("primitive", by_primitive), ("scope", by_scope), ("layer", by_layer)):
    report(f"\n| {title} | ms/step | share |\n|---|---:|---:|")
    for key, us in table.most_common(top):
      report(f"| {key} | {us / 1e3 / n:.1f} | {us / total * 100:.1f} % |")
  report("\n| instruction | ms/step | primitive | layer | shape |\n|---|---:|---|---|---|")
  for name, us, primitive, layer, shape in sorted(rows, key=lambda r: -r[1])[:top]:
    report(f"| {name} | {us / 1e3 / n:.1f} | {primitive} | {layer} | {shape} |")
  return {
      "wall_s": wall,
      "steps_per_call": n,
      "op_us": total,
      "by_primitive": dict(by_primitive),
      "by_scope": dict(by_scope),
      "by_layer": dict(by_layer),
      "top": sorted(rows, key=lambda r: -r[1])[:top],
  }


def _define_flags() -> None:
  config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
  flags.DEFINE_integer("top", 15, "rows per table")
  flags.mark_flags_as_required(["config"])


def main(argv) -> None:
  del argv
  profile(FLAGS.config, FLAGS.top)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
