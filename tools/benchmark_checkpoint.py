"""Times the training stall of one checkpoint save, synchronous vs asynchronous (mtjax.checkpoint).

    python tools/benchmark_checkpoint.py --config configs/nyud.py --saves 4

Builds the config's train state (model, optimizer and BatchNorm state; configs/nyud.py: SegNet-MTL,
images of --height x --width, 288x384 by default) without reading its dataset, then saves it `--saves` times
with each manager into `--workdir` (a local path or a gs:// URL; default a fresh temporary
directory) and prints, per mode, the median time `checkpoint.save` blocks the training loop (ms)
and the time until it is committed. The state's size is printed beside them. What the
asynchronous save still costs the loop is the copy of the state to host memory; the write itself
overlaps the following train steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import ml_collections  # noqa: E402

from mtjax import checkpoint, fileio, optimizer, seeds, sharding, train, weighting  # noqa: E402
from mtjax.models import registry  # noqa: E402


def load_config(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of the config file at `path`."""
  import importlib.util

  spec = importlib.util.spec_from_file_location("benchmark_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def build_state(config: ml_collections.ConfigDict, image_shape) -> train.TrainState:
  """The config's initial train state (no regularizer) for images of `image_shape` (H, W),
  replicated on the local mesh."""
  mesh = sharding.create_mesh()
  task_weighting = weighting.create(config, len(config.tasks), steps_per_epoch=1)
  tx = optimizer.create_optimizer(config, 1, None, task_weighting)
  return train.create_train_state(
      registry.create_model(config), tx, seeds.stream_key(config.seed, "init"), image_shape, mesh,
      None, task_weighting,
  )  # fmt: skip


def time_saves(
    state, workdir: str, *, async_save: bool, saves: int
) -> tuple[list[float], list[float]]:
  """(seconds each `checkpoint.save` blocked, seconds until each save was committed). Each save
  finds the previous one committed, as in training, where saves are thousands of steps apart."""
  manager = checkpoint.create_manager(workdir, keep=2, async_save=async_save)
  blocked, committed = [], []
  for step in range(1, saves + 1):
    t = time.perf_counter()
    checkpoint.save(manager, step, state)
    blocked.append(time.perf_counter() - t)
    manager.wait_until_finished()  # Not the loop's time: the steps between two saves.
    committed.append(time.perf_counter() - t)
  checkpoint.close(manager)
  return blocked, committed


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--config", default="configs/nyud.py", help="config file (get_config())")
  parser.add_argument("--saves", type=int, default=4, help="saves per mode (>= 1)")
  parser.add_argument("--height", type=int, default=288)
  parser.add_argument("--width", type=int, default=384)
  parser.add_argument("--workdir", default=None, help="where to save (default: a temporary dir)")
  args = parser.parse_args(argv)
  if args.saves < 1:
    parser.error(f"--saves must be >= 1, got {args.saves}")
  config = load_config(args.config)
  state = build_state(config, (args.height, args.width))
  size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  print(f"{args.config}: state {size / 2**20:.1f} MiB at {args.height}x{args.width}")
  with tempfile.TemporaryDirectory() as tmp:
    root = args.workdir or tmp
    for async_save in (False, True):
      mode = "async" if async_save else "sync"
      workdir = os.fspath(fileio.as_path(root) / f"benchmark_{mode}_{time.time_ns()}")
      blocked, committed = time_saves(state, workdir, async_save=async_save, saves=args.saves)
      print(
          f"{mode:5s}: save blocks the loop {1000 * statistics.median(blocked):8.1f} ms, "
          f"committed after {1000 * statistics.median(committed):8.1f} ms (medians of "
          f"{args.saves}; blocked {', '.join(f'{1000 * b:.0f}' for b in blocked)} ms)"
      )


if __name__ == "__main__":
  main()
