"""Times mtjax's jitted SegNet-MTL train step on the current backend (compile excluded).

    python tools/benchmark_train_step.py --batch_size 2 --height 288 --width 384 --steps 5

Prints one line per measured call and a summary: median ms/step and images/s, and the CPU. Each
call runs ``--steps_per_call`` train steps (``config.steps_per_call``; "auto", as in training: 8 on
the CPU, 1 elsewhere; ms/step = the call's time / its steps). With ``--compare_torch`` the same
SegNet-MTL in PyTorch eager (tools/torch_segnet.py) is timed in the same process, interleaved with
the JAX calls (as many PyTorch steps per round as JAX steps), and the speed ratio printed
(``--model mtcp``: tools/torch_mtcp.py; with ``--separate_processes`` PyTorch's steps run first in
a child process and JAX's after them here, for sizes where both do not fit in memory at once). A
JAX step whose XLA buffer plan exceeds the machine's memory is compiled, reported and not run. With
``--weighting lps`` (or another task weighting) the equal-weight step and the weighted one are
compiled side by side and timed interleaved. With
``--regularizer rdc`` the supervised step and the step with region-aware distribution contrast are
compiled side by side and timed interleaved, and the RDC overhead is printed as a ratio:

    python tools/benchmark_train_step.py --regularizer rdc --regions 64 --covariance full \
        --batch_size 8 --height 288 --width 384

 The state is donated
and the batch is sharded over all local devices, exactly as in training (`mtjax.train`). Reference on
a 2-core AMD EPYC CPU: a PyTorch eager SegNet-MTL step (Adam, 3 losses) at 288x384,
batch 2, takes 4.4-5.4 s (docs/performance.md).
"""

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

if "--compare_torch" in sys.argv and (
    "--separate_processes" not in sys.argv or "--torch_only" in sys.argv
):  # Not in the parent of --separate_processes, which runs no PyTorch.
  # PyTorch first: its CUDA wheels (the [sam] / [hrnet] extras) crash when imported into a process
  # that already holds TensorFlow, and the JAX side imports TensorFlow (tf.data).
  import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import torch._dynamo  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  # (loads triton)
  import torch.optim  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import default  # noqa: E402
from mtjax import calls, optimizer, sharding, train, weighting  # noqa: E402
from mtjax.models import registry  # noqa: E402
from tools import bench, torch_steps  # noqa: E402


def base_config(args):
  """configs/default.py with the command line's batch size, conv_impl and SegNet widths."""
  config = default.get_config()
  config.batch_size = args.batch_size
  config.model.conv_impl = args.conv_impl
  config.model.filters = tuple(int(f) for f in args.filters.split(","))
  return config


# --xla_cpu_scheduler: XLA's DebugOptions.CpuSchedulerType, as compiler options of the step.
CPU_SCHEDULERS = {
    "default": None,
    "memory_optimized": {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"},
    "concurrency_optimized": {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"},
}


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch_size", type=int, default=2, help="global batch size")
  parser.add_argument("--height", type=int, default=288)
  parser.add_argument("--width", type=int, default=384)
  parser.add_argument("--steps", type=int, default=5, help="measured steps after one warm-up")
  parser.add_argument("--conv_impl", default="auto", choices=("auto", "xla", "im2col"))
  parser.add_argument(
      "--steps_per_call",
      default="auto",
      help="config.steps_per_call: train steps per jitted call (auto: 8 on the CPU, else 1)",
  )
  parser.add_argument("--filters", default="64,128,256,512,512", help="SegNet channel widths")
  parser.add_argument(
      "--compare_torch",
      "--compare_torch",
      dest="compare_torch",
      action="store_true",
      help="also time the same network in PyTorch eager, interleaved: SegNet-MTL "
      "(tools/torch_segnet.py), HRNet (tools/benchmark_torch_hrnet.py: timm), MT-CP "
      "(tools/torch_mtcp.py); needs torch (and timm for HRNet)",
  )
  parser.add_argument(
      "--model",
      default="segnet_mtl",
      choices=("segnet_mtl", "hrnet_w18", "hrnet_w18_small_v2", "mtcp"),
      help="PyTorch eager of the same HRNet network: tools/benchmark_torch_hrnet.py; mtcp: "
      "MT-CP at the released sizes (configs/nyudmt_mtcp.py), --compare_torch times "
      "tools/torch_mtcp.py",
  )
  parser.add_argument(
      "--compute_dtype",
      default="float32",
      choices=("float32", "bfloat16", "both"),
      help="config.compute_dtype; both: time float32 and bfloat16 side by side",
  )
  parser.add_argument(
      "--cfm_chunk",
      type=int,
      default=0,
      help="mtcp: config.model.mtcp.cfm_chunk (and the PyTorch model's): rows of the Coherence "
      "Fusion's HW x HW affinity at a time, recomputed in the backward pass; 0: whole, as released",
  )
  parser.add_argument(
      "--separate_processes",
      action="store_true",
      help="mtcp with --compare_torch: PyTorch's steps first in a child process, then JAX's in this "
      "one (not interleaved), for sizes where both models do not fit in memory at once; each "
      "process's peak RSS is its own",
  )
  parser.add_argument("--torch_only", action="store_true", help=argparse.SUPPRESS)  # The child.
  parser.add_argument(
      "--xla_cpu_scheduler",
      default="default",
      choices=tuple(CPU_SCHEDULERS),
      help="XLA:CPU's instruction scheduler for the step (a compiler option of this compile only): "
      "memory_optimized orders the step to lower its peak memory (the rematerialisation of "
      "--remat then takes effect on the CPU)",
  )
  parser.add_argument(
      "--remat",
      action="store_true",
      help="mtcp: config.model.mtcp.remat (the trunk, decoders, Coherence Fusion and Trace-Back "
      "rematerialised in the backward pass); the PyTorch model is not (autograd keeps everything)",
  )
  parser.add_argument("--regularizer", default="none", choices=("none", "rdc"))
  parser.add_argument(
      "--weighting",
      default="equal",
      choices=("equal", "uncertainty", "dwa", "log_smoothing", "lps_no_log", "lps"),
      help="other than equal: time equal and this task weighting side by side",
  )
  parser.add_argument("--regions", type=int, default=64, help="rdc: regions per image (R)")
  parser.add_argument("--covariance", default="full", choices=("full", "diag"))
  parser.add_argument("--contrast", default="gaussian", choices=("gaussian", "vector", "pixel"))
  parser.add_argument("--mapping_filters", default="32,64", help="rdc: a_θ's stages (D = last)")
  parser.add_argument(
      "--label_setting",
      default="full",
      choices=("full", "onelabel"),
      help="full: every ordered task pair (6 for 3 tasks); onelabel: 2 pairs per example",
  )
  args = parser.parse_args()
  if args.separate_processes and not (args.compare_torch and args.model == "mtcp"):
    parser.error(
        "--separate_processes runs PyTorch's MT-CP apart: give --model mtcp --compare_torch"
    )
  if args.regularizer == "rdc":
    compare_regularizer(args)
    return
  if args.weighting != "equal":
    compare_weighting(args)
    return
  if args.compute_dtype == "both":
    compare_precision(args)
    return

  config = base_config(args) if args.model != "mtcp" else mtcp_config(args)
  config.model.name = args.model
  config.compute_dtype = args.compute_dtype
  torch_first, torch_child = None, None
  if args.torch_only:  # The child of --separate_processes: PyTorch's steps, then a result line.
    run = torch_steps.torch_mtcp_run(
        args, config, calls.resolve_steps_per_call(args.steps_per_call)
    )
    bench.time_interleaved({"torch": run}, args.steps, log_key="loss")
    print(
        torch_steps.TORCH_RESULT
        + json.dumps({"seconds": run[3], "peak_rss_gib": bench.peak_rss_gib()})
    )
    return
  if args.compare_torch and args.model == "mtcp" and args.separate_processes:
    torch_child = torch_steps.torch_mtcp_child(os.path.abspath(__file__))
  elif args.compare_torch and args.model == "mtcp":
    # PyTorch's warm-up first, so that the process's peak RSS after it is PyTorch's (plus the
    # JAX imports); JAX's memory is XLA's buffer plan of the compiled step.
    torch_first = torch_steps.torch_mtcp_run(
        args, config, calls.resolve_steps_per_call(args.steps_per_call)
    )
  mesh = sharding.create_mesh()
  sharding.per_process_batch_size(args.batch_size)  # Validates divisibility.
  model, tx = registry.create_model(config), optimizer.create_optimizer(config, steps_per_epoch=397)
  state = train.create_train_state(model, tx, jax.random.key(0), (args.height, args.width), mesh)
  steps_per_call = calls.resolve_steps_per_call(args.steps_per_call)
  host_batch = bench.synthetic_batch(args.batch_size, args.height, args.width, len(config.tasks))
  if steps_per_call == 1:
    step = train.make_train_step(config, model, tx, mesh)
    batch = sharding.global_batch(mesh, host_batch)
  else:
    step = train.make_train_step(config, model, tx, mesh, stacked=True)
    batch = sharding.global_batches(mesh, [host_batch] * steps_per_call)

  t0 = time.perf_counter()
  options = CPU_SCHEDULERS[args.xla_cpu_scheduler]
  compiled = step.lower(state, batch).compile(options)
  print(
      f"backend={jax.default_backend()} devices={jax.device_count()} model={args.model} "
      f"conv_impl={args.conv_impl} steps_per_call={steps_per_call} "
      f"xla_cpu_scheduler={args.xla_cpu_scheduler} compile={time.perf_counter() - t0:.1f}s",
      flush=True,
  )
  memory = compiled.memory_analysis()
  if memory is not None:
    planned = memory.argument_size_in_bytes + memory.output_size_in_bytes
    planned += memory.temp_size_in_bytes - memory.alias_size_in_bytes
    print(
        f"jax: XLA's buffer plan of the step {planned / 2**30:.2f} GiB (arguments "
        f"{memory.argument_size_in_bytes / 2**30:.2f}, temporaries "
        f"{memory.temp_size_in_bytes / 2**30:.2f})",
        flush=True,
    )
  if memory is not None and planned > bench.physical_memory_bytes():
    print(
        f"jax: not run: XLA's buffer plan {planned / 2**30:.2f} GiB exceeds this machine's "
        f"{bench.physical_memory_bytes() / 2**30:.2f} GiB of memory",
        flush=True,
    )
    if torch_child is not None:
      torch_steps.print_torch_child(args, torch_child)
    return
  print(f"jax: {bench.release_freed_memory()}", flush=True)
  state, metrics = compiled(state, batch)  # Warm-up.
  jax.block_until_ready(metrics)
  runs = {"jax": [compiled, state, batch, [], steps_per_call]}
  if torch_first is not None:
    runs["torch"] = torch_first
  elif args.compare_torch and torch_child is None:
    runs["torch"] = torch_steps.torch_run(args, config, steps_per_call)
  bench.time_interleaved(runs, args.steps, log_key="loss")
  jax_ms = float(np.median(runs["jax"][3])) * 1e3
  print(bench.cpu_description())
  print(
      f"batch={args.batch_size} {args.height}x{args.width} {args.model}: jax {jax_ms:.1f} ms/step "
      f"(median of {args.steps} calls of {steps_per_call} steps), "
      f"{args.batch_size / jax_ms * 1e3:.2f} images/s"
  )
  if torch_child is not None:
    torch_steps.print_torch_child(args, torch_child, jax_ms)
  elif args.compare_torch:
    torch_ms = float(np.median(runs["torch"][3])) * 1e3
    print(
        f"torch eager {torch_ms:.1f} ms/step, {args.batch_size / torch_ms * 1e3:.2f} images/s; "
        f"jax / torch speed ratio {torch_ms / jax_ms:.2f}x"
    )
  print(f"process peak RSS {bench.peak_rss_gib():.2f} GiB")


def mtcp_config(args):
  """configs/nyudmt_mtcp.py (MT-CP at the released sizes, AdamW) with equal task weights and the
  command line's batch size."""
  from configs import nyudmt_mtcp  # pylint: disable=g-import-not-at-top

  config = nyudmt_mtcp.get_config()
  config.batch_size = args.batch_size
  config.weighting.name = "equal"
  config.weighting.as_released, config.weighting.apply_weights = False, True
  config.model.mtcp.cfm_chunk = args.cfm_chunk
  config.model.mtcp.remat = args.remat
  config.label_setting = "full"
  return config


def compare_regularizer(args) -> None:
  """Supervised vs supervised + RDC train steps, compiled side by side and timed interleaved."""
  from mtjax import regularizers

  config = base_config(args)
  config.regularizer.name = "rdc"
  config.regularizer.covariance = args.covariance
  config.regularizer.contrast = args.contrast
  config.regularizer.mapping.filters = tuple(int(f) for f in args.mapping_filters.split(","))
  config.regions.source = "patch"
  config.regions.max_regions = args.regions
  config.regions.loss_stride = 2 ** len(config.regularizer.mapping.filters)
  num_tasks = len(config.tasks)
  mask = np.ones((args.batch_size, num_tasks), np.float32)
  if args.label_setting == "onelabel":
    mask = np.eye(num_tasks, dtype=np.float32)[np.arange(args.batch_size) % num_tasks]
  shape = (args.height, args.width)
  reg = regularizers.create(config, mask, config.dataset.num_classes, shape)
  mesh = sharding.create_mesh()
  host = bench.synthetic_batch(args.batch_size, args.height, args.width, num_tasks)
  host["label_mask"] = mask
  model = registry.create_model(config)
  runs = {}
  for name, r in (("supervised", None), ("rdc", reg)):
    tx = optimizer.create_optimizer(config, 397, r)
    state = train.create_train_state(model, tx, jax.random.key(0), shape, mesh, r)
    batch = dict(host)
    if r is not None:
      batch["regions"] = bench.synthetic_regions(args.batch_size, *shape, args.regions)
    batch = sharding.global_batch(mesh, batch)
    t0 = time.perf_counter()
    compiled = train.make_train_step(config, model, tx, mesh, r).lower(state, batch).compile()
    print(f"{name}: compile {time.perf_counter() - t0:.1f}s", flush=True)
    state, metrics = compiled(state, batch)  # Warm-up.
    jax.block_until_ready(metrics)
    runs[name] = [compiled, state, batch, []]
  bench.time_interleaved(runs, args.steps, log_key="loss/rdc")
  sup, with_rdc = (float(np.median(runs[k][3])) for k in ("supervised", "rdc"))
  print(
      f"backend={jax.default_backend()} batch={args.batch_size} {args.height}x{args.width} "
      f"R={args.regions} D={config.regularizer.mapping.filters[-1]} covariance={args.covariance} "
      f"contrast={args.contrast} labels={args.label_setting}: "
      f"supervised {sup * 1e3:.1f} ms, +rdc {with_rdc * 1e3:.1f} ms, "
      f"overhead {(with_rdc - sup) / sup * 100:.0f}% of the supervised step"
  )


def compare_precision(args) -> None:
  """float32 vs bfloat16 compute (``config.compute_dtype``), compiled side by side and timed
  interleaved."""
  config = base_config(args)
  shape = (args.height, args.width)
  mesh = sharding.create_mesh()
  host = bench.synthetic_batch(args.batch_size, *shape, len(config.tasks))
  runs = {}
  for name in ("float32", "bfloat16"):
    config.compute_dtype = name
    model = registry.create_model(config)
    tx = optimizer.create_optimizer(config, 397)
    state = train.create_train_state(model, tx, jax.random.key(0), shape, mesh)
    batch = sharding.global_batch(mesh, dict(host))
    compiled = train.make_train_step(config, model, tx, mesh).lower(state, batch).compile()
    state, metrics = compiled(state, batch)  # Warm-up.
    jax.block_until_ready(metrics)
    runs[name] = [compiled, state, batch, []]
  bench.time_interleaved(runs, args.steps, log_key="loss")
  f32, bf16 = (float(np.median(runs[k][3])) for k in ("float32", "bfloat16"))
  print(
      bench.cpu_description()
      if jax.default_backend() == "cpu"
      else f"backend={jax.default_backend()}"
  )
  print(
      f"batch={args.batch_size} {args.height}x{args.width} filters={args.filters}: "
      f"float32 {f32 * 1e3:.1f} ms, bfloat16 {bf16 * 1e3:.1f} ms, "
      f"bfloat16 speed {f32 / bf16:.2f}x float32 (median of {args.steps})"
  )


def compare_weighting(args) -> None:
  """Equal weights vs ``args.weighting``, compiled side by side and timed interleaved (the
  weighting's transform runs in every step; 4 steps per epoch, so epoch ends are timed too)."""
  config = base_config(args)
  shape = (args.height, args.width)
  mesh = sharding.create_mesh()
  model = registry.create_model(config)
  host = bench.synthetic_batch(args.batch_size, *shape, len(config.tasks))
  runs = {}
  for name in ("equal", args.weighting):
    config.weighting.name = name
    w = weighting.create(config, len(config.tasks), steps_per_epoch=4)
    tx = optimizer.create_optimizer(config, 4, None, w)
    state = train.create_train_state(model, tx, jax.random.key(0), shape, mesh, None, w)
    batch = sharding.global_batch(mesh, dict(host))
    compiled = train.make_train_step(config, model, tx, mesh, None, w).lower(state, batch).compile()
    state, metrics = compiled(state, batch)  # Warm-up.
    jax.block_until_ready(metrics)
    runs[name] = [compiled, state, batch, []]
  bench.time_interleaved(runs, args.steps, log_key="weight/semseg")
  base, other = (float(np.median(runs[k][3])) for k in ("equal", args.weighting))
  print(
      f"backend={jax.default_backend()} batch={args.batch_size} {args.height}x{args.width}: "
      f"equal {base * 1e3:.1f} ms, {args.weighting} {other * 1e3:.1f} ms, "
      f"overhead {(other - base) / base * 100:+.1f}% of the step (median of {args.steps})"
  )


if __name__ == "__main__":
  main()
