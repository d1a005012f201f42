"""The PyTorch side of ``tools/benchmark_train_step.py --compare_torch``: the same networks in
PyTorch eager (SegNet-MTL: ``tools/torch_segnet.py``; HRNet: ``tools/benchmark_torch_hrnet.py``,
timm's backbone; MT-CP: ``tools/torch_mtcp.py``) as runs for ``bench.time_interleaved``, and the
child process that runs MT-CP's PyTorch steps apart (``--separate_processes``).

Imports torch only inside its functions: the caller imports torch before TensorFlow (the CUDA
wheels crash when imported into a process that already holds TensorFlow). The PyTorch models'
modules are imported by name from tools/, which is on ``sys.path`` when a tool runs as a script.
"""

import json
import subprocess
import sys
import time

import numpy as np

from tools.bench import peak_rss_gib, synthetic_batch

TORCH_RESULT = "torch result: "


def torch_mtcp_child(script: str) -> dict:
  """Runs ``script`` (a path) with this process's arguments and ``--torch_only`` (PyTorch's MT-CP
  warm-up and steps in a child process; its output passes through) and returns its result line's
  {"seconds": [per step], "peak_rss_gib": ...}, or {"returncode": ...} when the child failed (a
  negative code is the signal that ended it, e.g. -9 when the kernel's OOM killer stopped it)."""
  child = subprocess.Popen(
      [sys.executable, script, *sys.argv[1:], "--torch_only"],
      stdout=subprocess.PIPE,
      text=True,
  )
  result = {}
  for line in child.stdout:
    print(line, end="", flush=True)
    if line.startswith(TORCH_RESULT):
      result = json.loads(line[len(TORCH_RESULT) :])
  returncode = child.wait()
  return result if returncode == 0 and result else {"returncode": returncode}


def print_torch_child(args, result: dict, jax_ms: float | None = None) -> None:
  """The child's PyTorch figures (and the speed ratio when JAX ran)."""
  if "seconds" not in result:
    print(f"torch eager (child process): failed with return code {result['returncode']}")
    return
  torch_ms = float(np.median(result["seconds"])) * 1e3
  ratio = f"; jax / torch speed ratio {torch_ms / jax_ms:.2f}x" if jax_ms else ""
  print(
      f"torch eager (child process) {torch_ms:.1f} ms/step, "
      f"{args.batch_size / torch_ms * 1e3:.2f} images/s, its peak RSS "
      f"{result['peak_rss_gib']:.2f} GiB{ratio}"
  )


def torch_mtcp_run(args, config, steps_per_call: int = 1) -> list:
  """[callable, None, batch, [], steps_per_call] running tools/torch_mtcp.py's MT-CP (the same
  sizes, transformers' trunk) eagerly with AdamW, after one warm-up step whose peak RSS is
  printed."""
  import torch  # pylint: disable=g-import-not-at-top

  import torch_mtcp  # pylint: disable=g-import-not-at-top  # tools/, beside this file.

  from mtjax.models import mtcp  # pylint: disable=g-import-not-at-top

  settings = mtcp.settings_from_config(config.model.mtcp)
  torch.manual_seed(0)
  before = peak_rss_gib()
  model = torch_mtcp.MTCP(
      torch_mtcp.trunk_config(settings.trunk),
      (config.dataset.num_classes, 1, 3),
      upsample=tuple(dict(settings.head_upsample)[t] for t in ("semseg", "depth", "normal")),
      width=settings.width,
      cfm_chunk=settings.cfm_chunk,
  ).train()
  batch = torch_batch(args, len(config.tasks))
  step = _TorchStep(torch_mtcp.make_step(model, config.learning_rate, config.weight_decay))
  t0 = time.perf_counter()
  step(None, batch)  # Warm-up.
  print(
      f"torch: warm-up step {time.perf_counter() - t0:.1f} s; process peak RSS "
      f"{peak_rss_gib():.2f} GiB after it ({before:.2f} GiB before the model)",
      flush=True,
  )
  step.steps = steps_per_call
  return [step, None, batch, [], steps_per_call]


class _TorchStep:
  """Adapts a PyTorch step to ``time_interleaved``'s (state, batch) -> (state, metrics) calls:
  each call runs ``steps`` steps and returns the last loss."""

  def __init__(self, step, steps: int = 1):
    self.step, self.steps = step, steps

  def __call__(self, state, batch):
    for _ in range(self.steps):
      loss = self.step(*batch)
    return state, {"loss": loss}


def torch_batch(args, num_tasks: int) -> tuple:
  """``synthetic_batch`` as NCHW PyTorch tensors: (image, semseg, depth, normal)."""
  import torch  # pylint: disable=g-import-not-at-top

  host = synthetic_batch(args.batch_size, args.height, args.width, num_tasks)
  nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
  return (
      nchw(host["image"]),
      torch.from_numpy(host["semseg"]).long(),
      nchw(host["depth"]),
      nchw(host["normal"]),
  )


def torch_run(args, config, steps_per_call: int = 1) -> list:
  """[callable, None, batch, [], steps_per_call] running tools/torch_segnet.py's SegNet-MTL (or,
  for ``--model hrnet_*``, tools/benchmark_torch_hrnet.py's HRNet: timm's backbone, the same
  heads) eagerly with MTPSL's losses and Adam, ``steps_per_call`` steps per call."""
  import torch  # pylint: disable=g-import-not-at-top

  import torch_segnet  # pylint: disable=g-import-not-at-top  # tools/, beside this file.

  torch.manual_seed(0)
  if args.model.startswith("hrnet"):  # timm's backbone and the same heads.
    import benchmark_torch_hrnet  # pylint: disable=g-import-not-at-top  # tools/, beside this file.

    model = benchmark_torch_hrnet.HRNetMTL(args.model, config.dataset.num_classes).train()
  else:
    model = torch_segnet.SegNetMTL(config.dataset.num_classes, tuple(config.model.filters))
    model = model.train()
  batch = torch_batch(args, len(config.tasks))
  step = _TorchStep(torch_segnet.make_step(model))
  step(None, batch)  # Warm-up.
  step.steps = steps_per_call
  return [step, None, batch, [], steps_per_call]
