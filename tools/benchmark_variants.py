"""Times a config's train step against variants of it (config overrides), side by side in one
process: the overhead of a regularizer, a covariance, a contrast, at the config's own sizes.

    python tools/benchmark_variants.py --config configs/nyud_rdc_as_released.py \\
        --config.dataset.data_dir=/path/to/nyuv2 --config.regions.dir=/path/to/regions \\
        --variant "supervised: regularizer.name='none'" \\
        --variant "paper full: regularizer.mode='paper', regularizer.covariance='full'" \\
        --variant "paper diag: regularizer.mode='paper', regularizer.covariance='diag'" --rounds 2

The first ``--variant`` is the baseline; the config as given is timed too (as "config"). Each
variant is the config with its overrides (``key=value`` pairs separated by commas; values are
Python literals), built as its own run (``run_parts.build_run``: model, regularizer, optimizer, its own
training batches, read before timing) and compiled as training runs it (``config.steps_per_call``
steps per jitted call). Rounds run every variant's call in turn (interleaved; compile and one
warm-up call excluded). Prints ms/step per round and a table of medians with each one's time over
the baseline's.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtjax import runtime  # noqa: E402,F401  (before TensorFlow: quiets its C++ banners)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtjax import calls, train  # noqa: E402

FLAGS = flags.FLAGS


def parse_variant(spec: str) -> tuple[str, dict]:
  """'name: a.b=1, c='x'' -> ("name", {"a.b": 1, "c": "x"}).

  Raises:
    ValueError: no "name:" or a pair without "=" or with a value that is not a Python literal.
  """
  name, sep, rest = spec.partition(":")
  if not sep or not name.strip():
    raise ValueError(f"--variant {spec!r}: expected 'name: key=value, key=value'")
  overrides = {}
  # Pairs are separated by commas that precede "key=" (a tuple's commas stay in its value).
  for pair in filter(None, (p.strip() for p in re.split(r",\s*(?=[\w.]+\s*=)", rest))):
    key, eq, value = pair.partition("=")
    if not eq:
      raise ValueError(f"--variant {spec!r}: {pair!r} is not key=value")
    try:
      overrides[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError) as e:
      raise ValueError(
          f"--variant {spec!r}: value {value.strip()!r} of {key.strip()} is not a Python literal "
          "(quote strings: regularizer.name='none')"
      ) from e
  return name.strip(), overrides


def _prepare(config) -> dict:
  """A built run of `config`: its compiled call, state and n batches (one call's)."""
  parts, step, batches = train.step_of_run(config)
  n = len(batches)
  call = calls.make_call(step, parts.mesh, n)
  state, metrics = call(parts.state, batches)  # Compile and warm up.
  jax.block_until_ready(metrics)
  return {"call": call, "state": state, "batches": batches, "n": n, "times": []}


def compare(config, variants: list[tuple[str, dict]], rounds: int, report=print) -> dict:
  """Times `config` and its `variants` ([(name, {dotted key: value})]) interleaved for `rounds`
  rounds; returns {name: [s/step per round]} (the config's own under "config").

  Raises:
    KeyError / TypeError: an override names no field of the config or has the wrong type; as
    ``run_parts.build_run`` for a variant it refuses.
  """
  runs = {}
  for name, overrides in [("config", {})] + list(variants):
    variant = config.copy_and_resolve_references()
    for key in overrides:  # Refuse a field the config lacks (a typo would add it, unused).
      node = variant
      for part in key.split("."):
        if part not in node:
          raise KeyError(f"variant {name!r}: the config has no field {key!r}")
        node = node[part]
    variant.update_from_flattened_dict(overrides)
    t0 = time.perf_counter()
    runs[name] = _prepare(variant)
    report(f"{name}: built and compiled in {time.perf_counter() - t0:.1f} s ({overrides})")
  for r in range(rounds):
    for name, run in runs.items():
      t0 = time.perf_counter()
      run["state"], metrics = run["call"](run["state"], run["batches"])
      jax.block_until_ready((run["state"], metrics))
      run["times"].append((time.perf_counter() - t0) / run["n"])
      report(f"round {r} {name}: {run['times'][-1] * 1e3:.1f} ms/step")
  return {name: run["times"] for name, run in runs.items()}


def _define_flags() -> None:
  config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
  flags.DEFINE_multi_string("variant", [], "'name: key=value, ...'; the first is the baseline")
  flags.DEFINE_integer("rounds", 2, "timed rounds (after compilation and one warm-up call)")
  flags.mark_flags_as_required(["config"])


def main(argv) -> None:
  del argv
  variants = [parse_variant(v) for v in FLAGS.variant]
  times = compare(FLAGS.config, variants, FLAGS.rounds)
  medians = {name: float(np.median(t)) for name, t in times.items()}
  base = variants[0][0] if variants else "config"
  print(f"\n| variant | ms/step | / {base} |\n|---|---:|---:|")
  for name, m in medians.items():
    print(f"| {name} | {m * 1e3:.1f} | {m / medians[base]:.2f} |")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
