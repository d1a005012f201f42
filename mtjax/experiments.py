"""Method comparisons: a grid of configs × seeds, each a normal training run in its own workdir,
summarised as mean ± std per metric and Δm against a baseline config.

    python -m mtjax.experiments --grid configs/experiments/demo_seeds.py \\
        --workdir runs/experiments/demo_seeds [--seeds=0,1,2] [--baseline=NAME] [--only=A,B]
        [--configs=A,B] [--report_only] [--by_step]

A grid file is a Python file whose ``get_grid()`` returns ``{"configs": {name: ConfigDict},
"seeds": (0, 1, ...), "baseline": name}`` (e.g. ``configs/experiments/demo_seeds.py``). Run
(name, seed) trains ``configs[name]`` with ``config.seed = seed`` in ``WORKDIR/name/seed_<seed>``
through ``mtjax.train.train_and_evaluate``, one after another. The harness is resumable:

* a finished run (its ``results.json`` holds the evaluation at the last step under the same config
  hash, ``mtjax.results``) is not rerun;
* an interrupted run resumes from its latest checkpoint;
* a workdir holding a run of another config is left untouched and reported as a conflict;
* a run that raises is recorded in ``failure.json`` beside it and reported as failed (the other
  runs go on); it is retried on the next invocation.

The table (printed, and written to ``WORKDIR/results.md`` with the per-run numbers in
``WORKDIR/summary.json``) has one row per config: how many seeds finished (missing, incomplete,
failed and conflicting runs are named, never silently dropped), mean ± sample standard deviation
(ddof = 1) of each metric over the finished seeds, and Δm (``mtjax.metrics.delta_m``, %) of
each finished run against the baseline config's mean metrics, as mean ± std over seeds. Below
it, the paired comparison: per config, each metric's difference to the baseline's run of the
same seed and Δm of each run against that run, as mean ± std over the seeds both finished, with
the paired t-test's two-sided p-value (``seed_stats.paired_t_test``). The
command exits non-zero when any run of the grid is not done (after printing the table).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from mtjax import runtime  # noqa: F401 -- first: quiets TensorFlow before a run imports it.
from mtjax import fileio, metrics, result_tables, seed_stats
from mtjax import results as results_lib

__all__ = [
    "DEFAULT_DELTA_M_METRICS",
    "DEFAULT_METRICS",
    "FAILURE_FILE",
    "Grid",
    "Run",
    "common_steps",
    "load_grid",
    "main",
    "make_grid",
    "report",
    "run_config",
    "run_grid",
    "run_state",
    "run_workdir",
    "select",
    "summarize",
]


FAILURE_FILE = "failure.json"
# The field's headline metrics (MTPSL's tables), and the triple Δm is measured on.
DEFAULT_METRICS = (
    "semseg/miou",
    "semseg/pixel_acc",
    "depth/abs_err",
    "depth/rel_err",
    "normal/mean",
    "normal/median",
)
DEFAULT_DELTA_M_METRICS = ("semseg/miou", "depth/abs_err", "normal/mean")


@dataclasses.dataclass(frozen=True)
class Grid:
  """Configs by name (in table order), the seeds each runs with, and the Δm baseline's name."""

  configs: Mapping[str, ml_collections.ConfigDict]
  seeds: tuple[int, ...]
  baseline: str


@dataclasses.dataclass(frozen=True)
class Run:
  """The state of run (name, seed) in `workdir`.

  status: "done" | "incomplete" | "missing" | "failed" | "conflict".
  evaluations: {step: {task: {metric: value}}} of the current config (all steps evaluated so far).
  message: why a run is not done (the error of a failed run, the step reached, ...).
  """

  name: str
  seed: int
  workdir: str
  status: str
  evaluations: Mapping[int, Mapping[str, Mapping[str, float]]] = dataclasses.field(
      default_factory=dict
  )
  final_step: int | None = None
  message: str = ""
  # {step: the "train" statistics recorded with that evaluation}: the mean gradient norms of the
  # interval before it ({"log_steps", "grad_norm/<term>", "grad_cos/<term>"}), where logged.
  train: Mapping[int, Mapping[str, float]] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------------


def load_grid(path: str) -> Grid:
  """Loads the grid file at `path` (see the module docstring).

  Raises:
    FileNotFoundError: no such file. ValueError: no `get_grid()`, a missing or malformed key, no
    config or no seed, a config that is not a ConfigDict, or a baseline that is not a config name.
  """
  if fileio.is_url(path):
    raise ValueError(f"grid file {path!r}: a grid is a Python module, imported from a local file")
  if not fileio.as_path(path).is_file():
    raise FileNotFoundError(f"grid file {path!r} not found")
  spec = importlib.util.spec_from_file_location(f"mtjax_grid_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_grid"):
    raise ValueError(f"grid file {path!r} defines no get_grid(); expected one returning a dict")
  return make_grid(**_grid_kwargs(module.get_grid(), path))


def _grid_kwargs(grid: Any, where: str) -> dict:
  expected = {"configs", "seeds", "baseline"}
  if not isinstance(grid, Mapping) or set(grid) != expected:
    keys = sorted(grid) if isinstance(grid, Mapping) else type(grid).__name__
    raise ValueError(
        f"{where}: get_grid() returned {keys}; expected a dict with keys {sorted(expected)}"
    )
  return dict(grid)


def make_grid(
    configs: Mapping[str, ml_collections.ConfigDict], seeds: Sequence[int], baseline: str
) -> Grid:
  """A validated `Grid`.

  Raises:
    ValueError: no config, a config that is not a ConfigDict, a name that cannot be a directory,
      no seed or a repeated one, or a baseline that is not one of the config names.
  """
  if not configs:
    raise ValueError("the grid has no config; expected at least one {name: ConfigDict}")
  for name, config in configs.items():
    if not isinstance(config, ml_collections.ConfigDict):
      raise ValueError(f"grid config {name!r} is a {type(config).__name__}; expected a ConfigDict")
    if not name or name.startswith(".") or "/" in name or os.sep in name:
      raise ValueError(f"grid config name {name!r}: expected a plain directory name")
  seeds = tuple(int(s) for s in seeds)
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds {seeds}: expected one or more distinct integers")
  if baseline not in configs:
    raise ValueError(f"baseline {baseline!r} is not a config of the grid {tuple(configs)}")
  return Grid(dict(configs), seeds, baseline)


def select(grid: Grid, names: Sequence[str]) -> Grid:
  """The sub-grid of the configs `names` (in the grid's order), same seeds and baseline.

  Raises:
    ValueError: a name that is not a config of `grid`, or a selection without the baseline (Δm is
      measured against it).
  """
  unknown = sorted(set(names) - set(grid.configs))
  if unknown:
    raise ValueError(f"configs {unknown} are not configs of the grid {tuple(grid.configs)}")
  if grid.baseline not in names:
    raise ValueError(
        f"the selection {tuple(names)} leaves out the baseline {grid.baseline!r}; Δm needs it"
    )
  return make_grid({n: c for n, c in grid.configs.items() if n in names}, grid.seeds, grid.baseline)


def run_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """A copy of `config` with `config.seed = seed` (locked, as the trainer's configs are)."""
  config = ml_collections.ConfigDict(config.to_dict())  # Deep copy; unlocked.
  config.seed = int(seed)
  config.lock()
  return config


def run_workdir(root: str, name: str, seed: int) -> str:
  """`root`/`name`/seed_`seed` (`root` a local path or a gs:// URL)."""
  return os.fspath(fileio.as_path(root) / name / f"seed_{seed}")


# ---------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------


@functools.cache
def _defaults() -> dict | None:
  """configs/default.py's config as a dict (the keys a record older than them is read with), or
  None outside a checkout that has it."""
  try:
    default = importlib.import_module("configs.default")
  except ImportError:
    return None
  return default.get_config().to_dict()


def run_state(name: str, seed: int, workdir: str, config: ml_collections.ConfigDict) -> Run:
  """What `workdir` holds of run (name, seed) of `config` (see `Run`); reads, never writes.

  A record written before a key was added to configs/default.py is read with that key's default
  (``results.read``'s ``defaults``), so adding an option that keeps the old behaviour does not
  turn finished runs into conflicts."""
  expected = results_lib.config_hash(config)
  try:
    record = results_lib.read(workdir, defaults=_defaults())
  except ValueError as e:
    return Run(name, seed, workdir, "conflict", message=str(e))
  if record is not None and record["config_hash"] != expected:
    return Run(
        name,
        seed,
        workdir,
        "conflict",
        message=f"{workdir} holds a run of another config (hash {record['config_hash'][:12]}, "
        f"expected {expected[:12]}); delete it or choose another --workdir",
    )
  evaluations, train = {}, {}
  if record is not None:
    current = [e for e in record["evaluations"] if e["config_hash"] == expected]
    evaluations = {e["step"]: e["metrics"] for e in current}
    train = {e["step"]: e["train"] for e in current if e.get("train")}
  final = results_lib.final_evaluation(record)
  if final is not None:
    return Run(name, seed, workdir, "done", evaluations, final["step"], train=train)
  failure = _read_failure(workdir)
  if failure is not None:
    return Run(name, seed, workdir, "failed", evaluations, message=failure)
  if record is None:
    return Run(name, seed, workdir, "missing", message="not run")
  reached = max(evaluations, default=0)
  return Run(
      name,
      seed,
      workdir,
      "incomplete",
      evaluations,
      message=f"evaluated up to step {reached} of {record['num_train_steps']}",
  )


def _read_failure(workdir: str) -> str | None:
  try:
    return json.loads(fileio.read_text(fileio.as_path(workdir) / FAILURE_FILE))["error"]
  except (FileNotFoundError, json.JSONDecodeError, KeyError):
    return None


def _write_failure(workdir: str, error: BaseException) -> None:
  failure = {
      "error": f"{type(error).__name__}: {error}",
      "traceback": traceback.format_exception(error),
      "time": time.time(),
  }
  fileio.write_atomic(fileio.as_path(workdir) / FAILURE_FILE, json.dumps(failure, indent=1))


def run_grid(
    grid: Grid,
    root: str,
    *,
    train_fn: Callable[[ml_collections.ConfigDict, str], Any] | None = None,
    names: Sequence[str] | None = None,
    execute: bool = True,
    log: Callable[[str], None] = print,
) -> list[Run]:
  """Runs every (config, seed) of `grid` under `root` that is not finished, one after another.

  Args:
    grid: see `Grid`.
    root: the experiment's directory; run (name, seed) lives in `run_workdir(root, name, seed)`.
    train_fn: (config, workdir) -> anything; default `mtjax.train.train_and_evaluate`.
    names: the configs to train (default all); the others are only read.
    execute: False only reads what is there (a report of the runs so far).
    log: where one line per run goes.

  Returns:
    The final `Run` of every (name, seed), in grid order. An exception of `train_fn` marks that
    run failed (written to its failure.json) and the grid goes on; KeyboardInterrupt stops it.
  """
  if train_fn is None and execute:
    from mtjax import train  # Deferred: reading and summarising runs needs no training stack.

    train_fn = train.train_and_evaluate
  runs = []
  total = len(grid.configs) * len(grid.seeds)
  for i, (name, seed) in enumerate(((n, s) for n in grid.configs for s in grid.seeds), 1):
    config = run_config(grid.configs[name], seed)
    workdir = run_workdir(root, name, seed)
    run = run_state(name, seed, workdir, config)
    prefix = f"[{i}/{total}] {name} seed {seed} ({workdir}):"
    if (
        run.status in ("done", "conflict")
        or not execute
        or (names is not None and name not in names)
    ):
      log(f"{prefix} {run.status}{', not rerun' if run.status == 'done' else ''} {run.message}")
      runs.append(run)
      continue
    log(f"{prefix} training ({run.status}{': ' + run.message if run.message else ''})")
    try:
      train_fn(config, workdir)
    except Exception as e:  # noqa: BLE001 -- one failed run must not stop the grid.
      _write_failure(workdir, e)
      log(f"{prefix} FAILED: {type(e).__name__}: {e}")
    else:
      fileio.as_path(workdir).joinpath(FAILURE_FILE).unlink(missing_ok=True)
    run = run_state(name, seed, workdir, config)
    if run.status == "incomplete":  # Trained without error but wrote no final evaluation.
      run = dataclasses.replace(run, status="failed", message=f"no final evaluation: {run.message}")
    log(f"{prefix} {run.status} {run.message}")
    runs.append(run)
  return runs


# ---------------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------------


def _value(evaluation: Mapping[str, Mapping[str, float]], key: str) -> float:
  task, metric = key.split("/", 1)
  return float(evaluation.get(task, {}).get(metric, math.nan))


def summarize(
    runs: Sequence[Run],
    baseline: str,
    *,
    metric_keys: Sequence[str] = DEFAULT_METRICS,
    delta_m_keys: Sequence[str] = DEFAULT_DELTA_M_METRICS,
    step: int | None = None,
) -> list[dict[str, Any]]:
  """One summary row per config (in the order of `runs`) at the final step, or at `step`.

  Returns:
    [{"name", "step", "num_runs", "num_used", "problems": [str], "values": {key: [per run]},
    "mean": {key: float}, "std": {key: float}, "delta_m": [per run], "delta_m_mean",
    "delta_m_std", "seeds": [per run], "paired"}]; means and sample stds (ddof = 1) over the runs
    that reached the step (NaN where none did, std NaN for one run). Δm (%) of each used run is
    `mtjax.metrics.delta_m` of its `delta_m_keys` against the baseline's means at the same step.
    "paired" (``_paired``) compares each run with the baseline's run of the same seed.

  Raises:
    ValueError: a metric key not of the form "task/metric", or a Δm metric with no direction.
  """
  for key in (*metric_keys, *delta_m_keys):
    if key.count("/") != 1:
      raise ValueError(f"metric {key!r}: expected 'task/metric', e.g. 'depth/abs_err'")
  for key in delta_m_keys:
    if key.split("/")[1] not in metrics.HIGHER_IS_BETTER:
      raise ValueError(
          f"Δm metric {key!r} has no direction; expected one of {sorted(metrics.HIGHER_IS_BETTER)}"
      )
  names = list(dict.fromkeys(r.name for r in runs))
  rows = []
  for name in names:
    group = [r for r in runs if r.name == name]
    used, used_seeds, problems = [], [], []
    for r in group:
      at = r.final_step if step is None else step
      if r.status == "done" or (step is not None and step in r.evaluations):
        if at in r.evaluations:
          used.append(r.evaluations[at])
          used_seeds.append(r.seed)
          continue
      problems.append(f"seed {r.seed} {r.status}" + (f": {r.message}" if r.message else ""))
    values = {k: [_value(e, k) for e in used] for k in (*metric_keys, *delta_m_keys)}
    stats = {k: seed_stats.mean_std(v) for k, v in values.items()}
    rows.append(
        {
            "name": name,
            "step": step,
            "num_runs": len(group),
            "num_used": len(used),
            "seeds": used_seeds,
            "problems": problems,
            "values": values,
            "mean": {k: s[0] for k, s in stats.items()},
            "std": {k: s[1] for k, s in stats.items()},
        }
    )
  by_name = {row["name"]: row for row in rows}
  base = by_name.get(baseline)
  for row in rows:
    deltas = []
    if base is not None and base["num_used"]:
      references = {}
      for key in delta_m_keys:
        task, metric = key.split("/")
        if math.isfinite(base["mean"][key]):
          references.setdefault(task, {})[metric] = base["mean"][key]
      for i in range(row["num_used"]):
        run_metrics = {}
        for key in delta_m_keys:
          task, metric = key.split("/")
          if math.isfinite(row["values"][key][i]):
            run_metrics.setdefault(task, {})[metric] = row["values"][key][i]
        d = metrics.delta_m(run_metrics, references) if references else None
        deltas.append(math.nan if d is None else d)
    row["delta_m"] = deltas
    row["delta_m_mean"], row["delta_m_std"] = seed_stats.mean_std(deltas)
    keys = tuple(dict.fromkeys((*metric_keys, *delta_m_keys)))
    row["paired"] = _paired(row, base, keys, delta_m_keys)
  return rows


def _paired(row, base, keys: Sequence[str], delta_m_keys: Sequence[str]) -> dict[str, Any]:
  """Each metric's difference to the baseline run of the same seed, and Δm of each run against
  that run, over the seeds both finished: {"seeds", "diff": {key: [per seed]}, "diff_mean",
  "diff_std", "diff_p", "delta_m": [per seed], "delta_m_mean", "delta_m_std", "delta_m_p"}."""
  out = {"seeds": [], "diff": {k: [] for k in keys}, "delta_m": []}
  if base is not None:
    base_index = {seed: i for i, seed in enumerate(base["seeds"])}
    for i, seed in enumerate(row["seeds"]):
      j = base_index.get(seed)
      if j is None:
        continue
      out["seeds"].append(seed)
      for k in keys:
        out["diff"][k].append(row["values"][k][i] - base["values"][k][j])
      ours, theirs = {}, {}
      for key in delta_m_keys:
        task, metric = key.split("/")
        a, b = row["values"][key][i], base["values"][key][j]
        if math.isfinite(a) and math.isfinite(b) and b != 0:
          ours.setdefault(task, {})[metric] = a
          theirs.setdefault(task, {})[metric] = b
      d = metrics.delta_m(ours, theirs) if theirs else None
      out["delta_m"].append(math.nan if d is None else d)
  stats = {k: seed_stats.mean_std(v) for k, v in out["diff"].items()}
  out["diff_mean"] = {k: s[0] for k, s in stats.items()}
  out["diff_std"] = {k: s[1] for k, s in stats.items()}
  out["diff_p"] = {k: seed_stats.paired_t_test(v) for k, v in out["diff"].items()}
  out["delta_m_mean"], out["delta_m_std"] = seed_stats.mean_std(out["delta_m"])
  out["delta_m_p"] = seed_stats.paired_t_test(out["delta_m"])
  return out


def common_steps(runs: Sequence[Run]) -> list[int]:
  """The steps at which every run that has evaluations evaluated, ascending."""
  sets = [set(r.evaluations) for r in runs if r.evaluations]
  return sorted(set.intersection(*sets)) if sets else []


def report(
    grid: Grid,
    runs: Sequence[Run],
    *,
    metric_keys: Sequence[str] = DEFAULT_METRICS,
    delta_m_keys: Sequence[str] = DEFAULT_DELTA_M_METRICS,
    by_step: bool = False,
) -> tuple[str, dict]:
  """(Markdown, JSON-able summary) of the runs: the final table, and with `by_step` one row per
  (config, step) at every step all of a config's evaluated runs share."""
  kwargs = dict(metric_keys=metric_keys, delta_m_keys=delta_m_keys)
  rows = summarize(runs, grid.baseline, **kwargs)
  text = result_tables.markdown_table(rows, grid.baseline, **kwargs)
  gradients = seed_stats.gradient_summary(runs)
  if gradients:
    text += "\n" + result_tables.gradient_table(gradients)
  summary = {"final": rows, "gradients": gradients}
  if by_step:
    step_rows = []
    for name in grid.configs:
      group = [r for r in runs if r.name == name]
      for step in common_steps(group):
        step_rows += [
            row
            for row in summarize(runs, grid.baseline, step=step, **kwargs)
            if row["name"] == name
        ]
    text += "\nAt each evaluation:\n\n"
    text += result_tables.markdown_table(step_rows, grid.baseline, **kwargs)
    summary["by_step"] = step_rows
  summary["runs"] = [dataclasses.asdict(r) for r in runs]
  return text, summary


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

_FLAGS = None


def _define_flags():
  from absl import flags

  flags.DEFINE_string("grid", None, "Grid file defining get_grid() (see configs/experiments/).")
  flags.DEFINE_string("workdir", None, "The experiment's root directory (one workdir per run).")
  flags.DEFINE_list("seeds", None, "Seeds, overriding the grid's.")
  flags.DEFINE_string("baseline", None, "Config name Δm is measured against (default: the grid's).")
  flags.DEFINE_list("only", None, "Config names to train (the table still shows every config).")
  flags.DEFINE_list(
      "configs", None, "Restrict the grid to these configs: train and tabulate only them."
  )
  flags.DEFINE_bool("report_only", False, "Read and tabulate the runs; train nothing.")
  flags.DEFINE_bool("by_step", False, "Also tabulate every evaluation step.")
  flags.DEFINE_list("metrics", list(DEFAULT_METRICS), "task/metric columns of the table.")
  flags.DEFINE_list("delta_m_metrics", list(DEFAULT_DELTA_M_METRICS), "task/metric entering Δm.")
  flags.mark_flags_as_required(["grid", "workdir"])
  return flags.FLAGS


def main(argv: Sequence[str]) -> None:
  from absl import app

  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  runtime.configure_logging()
  flags = _FLAGS
  grid = load_grid(flags.grid)
  grid = make_grid(
      grid.configs,
      grid.seeds if flags.seeds is None else [int(s) for s in flags.seeds],
      grid.baseline if flags.baseline is None else flags.baseline,
  )
  if flags.configs is not None:
    try:
      grid = select(grid, flags.configs)
    except ValueError as e:
      raise app.UsageError(f"--configs={','.join(flags.configs)}: {e}") from None
  if flags.only is not None and not set(flags.only) <= set(grid.configs):
    raise app.UsageError(
        f"--only={','.join(flags.only)}: {sorted(set(flags.only) - set(grid.configs))} are not "
        f"configs of the grid {tuple(grid.configs)}"
    )
  keys = dict(metric_keys=tuple(flags.metrics), delta_m_keys=tuple(flags.delta_m_metrics))
  summarize([], grid.baseline, **keys)  # Validates the metric names before anything trains.

  if not flags.report_only:
    runtime.configure_devices()
    run_grid(grid, flags.workdir, names=flags.only)
  runs = run_grid(grid, flags.workdir, execute=False, log=lambda _: None)
  text, summary = report(grid, runs, by_step=flags.by_step, **keys)
  fileio.write_atomic(fileio.as_path(flags.workdir) / "results.md", text)
  fileio.write_atomic(
      fileio.as_path(flags.workdir) / "summary.json", json.dumps(summary, indent=1, default=str)
  )
  print(text, flush=True)
  not_done = [f"{r.name}/seed_{r.seed}: {r.status}" for r in runs if r.status != "done"]
  if not_done:
    sys.exit(f"{len(not_done)} of {len(runs)} runs not done: " + "; ".join(not_done))


if __name__ == "__main__":
  from absl import app

  _FLAGS = _define_flags()
  app.run(main)
