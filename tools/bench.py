"""What the train-step benchmarks share: synthetic batches in the trainer's layout, interleaved
timing of compiled steps, and measures of this process and machine (resident memory, handing
freed heap pages back, the CPU).

Used by ``tools/benchmark_train_step.py`` and its PyTorch side (``tools/torch_steps.py``); the
tests build batches with ``synthetic_batch``.
"""

import ctypes
import ctypes.util
import os
import resource
import time

import jax
import numpy as np


def synthetic_regions(batch_size: int, height: int, width: int, num_regions: int) -> np.ndarray:
  """int32 [B, H, W]: a grid of about ``num_regions`` rectangles (ids 0..R-1, largest first is
  not needed: every id present)."""
  rows = max(1, int(np.sqrt(num_regions)))
  cols = num_regions // rows
  y = np.arange(height)[:, None] * rows // height
  x = np.arange(width)[None, :] * cols // width
  return np.broadcast_to((y * cols + x).astype(np.int32), (batch_size, height, width)).copy()


def synthetic_batch(batch_size: int, height: int, width: int, num_tasks: int, seed: int = 0):
  """A random full-label batch in the trainer's layout (SPEC: image, semseg, depth, normal,
  label_mask, valid), numpy float32 / int32, [B, H, W, ...]."""
  rng = np.random.default_rng(seed)
  normal = rng.normal(size=(batch_size, height, width, 3)).astype(np.float32)
  return {
      "image": rng.random((batch_size, height, width, 3), dtype=np.float32),
      "semseg": rng.integers(-1, 13, (batch_size, height, width)).astype(np.int32),
      "depth": rng.uniform(0.5, 10.0, (batch_size, height, width, 1)).astype(np.float32),
      "normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True),
      "label_mask": np.ones((batch_size, num_tasks), np.float32),
      "valid": np.ones((batch_size,), np.float32),
  }


def time_interleaved(runs: dict, steps: int, log_key: str) -> None:
  """Times ``steps`` calls of each run in turn; ``runs[name] = [compiled, state, batch, times]``
  or ``[..., times, steps_per_call]`` (state and times, in seconds per step, updated in place)."""
  for i in range(steps):
    for name, run in runs.items():
      compiled, state, batch, times = run[:4]
      per_call = run[4] if len(run) > 4 else 1
      r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      state, metrics = compiled(state, batch)
      jax.block_until_ready((state, metrics))
      times.append((time.perf_counter() - t0) / per_call)
      r1 = resource.getrusage(resource.RUSAGE_SELF)
      cpu = (
          f" (per step: user {(r1.ru_utime - r0.ru_utime) / per_call:.1f} s, system "
          f"{(r1.ru_stime - r0.ru_stime) / per_call:.1f} s, page faults "
          f"{(r1.ru_minflt - r0.ru_minflt) * resource.getpagesize() / per_call / 2**30:.2f} GiB)"
      )
      run[1] = state
      extra = ""
      if log_key in metrics:
        extra = f" {log_key}={float(np.ravel(metrics[log_key])[-1]):.4f}"
      calls = f" per step (call of {per_call})" if per_call > 1 else ""
      print(f"step {i} {name}: {times[-1] * 1e3:.1f} ms{calls}{extra}{cpu}", flush=True)


def cpu_description() -> str:
  """The CPU model and its widest vector extension, from /proc/cpuinfo (Linux)."""
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
  except OSError:
    return "cpu: unknown"
  model = next(
      (l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?"
  )
  flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
  vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
  return f"cpu: {model} ({vector}), {os.cpu_count()} logical cores"


def physical_memory_bytes() -> int:
  """This machine's physical memory (POSIX sysconf)."""
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def rss_gib() -> float:
  """This process's resident memory now, GiB (Linux: VmRSS of /proc/self/status)."""
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 2**20
  raise RuntimeError("/proc/self/status has no VmRSS line: this measure needs Linux")


def release_freed_memory() -> str:
  """Returns to the OS the heap pages the process freed (glibc's ``malloc_trim(0)``): XLA's
  compiler frees gigabytes for a large step that glibc otherwise keeps in its arenas, resident,
  beside the step's own buffers. Returns a line saying what it did (RSS before and after), or why
  it did nothing (a C library without ``malloc_trim``)."""
  libc = ctypes.CDLL(ctypes.util.find_library("c"))
  if not hasattr(libc, "malloc_trim"):
    return "the C library has no malloc_trim: freed heap memory stays resident"
  before = rss_gib()
  libc.malloc_trim(0)
  return f"malloc_trim(0): resident {before:.2f} -> {rss_gib():.2f} GiB before the first step"


def peak_rss_gib() -> float:
  """This process's peak resident memory so far, GiB (Linux: ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
