"""Times a shipped config's train step at 1 step per jitted call and at its ``steps_per_call``
("auto": 8 on the CPU, 1 elsewhere; calls.resolve_steps_per_call), side by side in one process.

    python tools/benchmark_steps_per_call.py --config configs/nyud_hrnet18.py \\
        --config.dataset.data_dir=/path/to/nyuv2 --rounds 3 --max_ratio 1.05

The run is the config's own (`train.step_of_run`: model, regularizer, task weighting, optimizer, its
image size and batch size) on its own training batches (`run_parts.train_batches`, read before timing).
Each round runs n = steps_per_call steps as n one-step calls and then as one call of n steps
(`calls.make_call`, as the training loop calls them), each from its own copy of the state; compile
excluded. Prints ms/step per round, the medians, and the ratio (steps_per_call / one step per
call); with ``--max_ratio`` exits with status 1 when the ratio exceeds it. Config overrides:
``--config.key=value`` (as ``mtjax.main``).
"""

import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtjax import runtime  # noqa: E402,F401  (before TensorFlow: quiets its C++ banners)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mtjax import calls, train  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The command line's flags (defined when run as a script, so that importing ``compare`` into
  a process with its own ``--config`` flag is harmless)."""
  config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
  flags.DEFINE_integer("rounds", 3, "timed rounds (after one warm-up round)")
  flags.DEFINE_float(
      "max_ratio", None, "exit 1 when steps_per_call's ms/step / one step's exceeds it"
  )
  flags.mark_flags_as_required(["config"])


def _time_call(call, state, batches) -> tuple:
  t0 = time.perf_counter()
  state, metrics = call(state, batches)
  jax.block_until_ready((state, metrics))
  return state, time.perf_counter() - t0


def compare(config, rounds: int, report=print) -> dict:
  """Times `config`'s train step at 1 and at n = steps_per_call steps per call (module docstring).

  Returns {"steps_per_call": n, "one": [s/step per round], "several": [s/step per round],
  "states": {"one": state, "several": state}} (the states after every round: the same updates).
  """
  parts, step, batches = train.step_of_run(config)
  n = len(batches)
  one, several = calls.make_call(step, parts.mesh, 1), calls.make_call(step, parts.mesh, n)
  states = {"one": parts.state, "several": jax.tree.map(jnp.copy, parts.state)}
  shape = batches[0]["image"].shape
  report(
      f"{config.model.name} regularizer={config.regularizer.name} batch {shape[0]} images "
      f"{shape[1]}x{shape[2]} steps_per_call={config.steps_per_call!r} -> {n}; backend "
      f"{jax.default_backend()}, {os.cpu_count()} CPUs"
  )
  times = {"one": [], "several": []}
  for r in range(rounds + 1):  # Round 0 compiles and warms up.
    total = 0.0
    for batch in batches:
      states["one"], t = _time_call(one, states["one"], [batch])
      total += t
    states["several"], t_n = _time_call(several, states["several"], batches)
    if r:
      times["one"].append(total / n)
      times["several"].append(t_n / n)
      report(
          f"round {r}: 1 per call {total / n * 1e3:.1f} ms/step, {n} per call "
          f"{t_n / n * 1e3:.1f} ms/step"
      )
  return {"steps_per_call": n, **times, "states": states}


def main(argv):
  del argv
  out = compare(FLAGS.config, FLAGS.rounds, report=lambda line: print(line, flush=True))
  n = out["steps_per_call"]
  t1, tn = float(np.median(out["one"])), float(np.median(out["several"]))
  ratio = tn / t1
  print(
      f"median of {FLAGS.rounds} rounds: 1 step per call {t1 * 1e3:.1f} ms/step, {n} steps per call "
      f"{tn * 1e3:.1f} ms/step; ratio {ratio:.3f}"
  )
  if FLAGS.max_ratio is not None and ratio > FLAGS.max_ratio:
    print(f"FAIL: {n} steps per call is {ratio:.3f}x one step per call (> {FLAGS.max_ratio})")
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
