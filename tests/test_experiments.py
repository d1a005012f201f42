"""The experiment harness: grids of configs × seeds, resumable runs, mean ± std tables, Δm."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest

from configs import default
from mtjax import experiments, result_tables, results, seed_stats
from mtjax.models import mtcp
from tests.data_fixtures import make_nyuv2_layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ("semseg/miou", "depth/abs_err", "normal/mean")

GRID_FILE = """
from tests.test_train import tiny_config


def tiny(label_setting):
  return tiny_config(
      {data_dir!r},
      label_setting=label_setting,
      num_train_steps=2,
      eval_every_steps=1,
      num_panel_images=1,
      delta_m_reference="",
  )


def get_grid():
  return {{
      "configs": {{"onelabel": tiny("onelabel"), "full": tiny("full")}},
      "seeds": (0, 1),
      "baseline": "onelabel",
  }}
"""


def run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  cmd = [sys.executable, "-m", "mtjax.experiments", *args]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _final_metrics(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    record = json.load(f)
  return record["evaluations"][-1]["metrics"]


def _value(evaluation, key):
  task, metric = key.split("/")
  return evaluation[task][metric]


@pytest.mark.slow
def test_tiny_grid_table_matches_numpy_and_finished_runs_are_not_rerun(tmp_path):
  data_dir = make_nyuv2_layout(tmp_path / "nyuv2", splits={"train": 4, "val": 2}, hw=(32, 64))
  grid_file = tmp_path / "grid.py"
  grid_file.write_text(GRID_FILE.format(data_dir=str(data_dir)))
  root = tmp_path / "exp"
  proc = run_cli(f"--grid={grid_file}", f"--workdir={root}", "--by_step")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

  with open(root / "summary.json") as f:
    summary = json.load(f)
  per_run = {
      name: [_final_metrics(root / name / f"seed_{s}") for s in (0, 1)]
      for name in ("onelabel", "full")
  }
  base_means = {k: np.mean([_value(e, k) for e in per_run["onelabel"]]) for k in METRICS}
  table = (root / "results.md").read_text()
  for row in summary["final"]:
    assert (row["num_used"], row["num_runs"], row["problems"]) == (2, 2, [])
    for key in experiments.DEFAULT_METRICS:
      values = np.array([_value(e, key) for e in per_run[row["name"]]], np.float64)
      np.testing.assert_allclose(row["mean"][key], values.mean(), rtol=1e-12)
      np.testing.assert_allclose(row["std"][key], values.std(ddof=1), rtol=1e-9, atol=1e-12)
      assert f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" in table or key.startswith("depth")
    # Δm of each run against the baseline's means: MTPSL's formula over mIoU, abs_err, mean.
    signs = {"semseg/miou": 1.0, "depth/abs_err": -1.0, "normal/mean": -1.0}
    deltas = [
        100 * np.mean([signs[k] * (_value(e, k) - base_means[k]) / base_means[k] for k in METRICS])
        for e in per_run[row["name"]]
    ]
    np.testing.assert_allclose(row["delta_m"], deltas, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(row["delta_m_mean"], np.mean(deltas), atol=1e-9)
  assert abs(np.mean(summary["final"][0]["delta_m"])) < 1e-9  # The baseline against itself.
  assert "| onelabel | 2/2 |" in table and "| full | 2/2 |" in table
  # Every evaluation step (1 and 2) is tabulated too.
  assert sorted({(r["name"], r["step"]) for r in summary["by_step"]}) == [
      ("full", 1),
      ("full", 2),
      ("onelabel", 1),
      ("onelabel", 2),
  ]

  # Rerun: every run is finished, so nothing trains and nothing is rewritten.
  stamps = {p: os.stat(p).st_mtime_ns for p in root.glob("*/seed_*/results.json")}
  proc = run_cli(f"--grid={grid_file}", f"--workdir={root}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("done, not rerun") == 4, proc.stdout
  assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps


# ------------------------------------------------------------------ the harness without training


def _config(label_setting="onelabel"):
  config = default.get_config()
  config.label_setting = label_setting
  config.num_train_steps = 10
  return config


def _fake_train(values, fail_seeds=(), stop_at=None):
  """A train_fn that writes results.json as the trainer does, with metrics from `values`."""
  calls = []

  def train_fn(config, workdir):
    calls.append((config.label_setting, config.seed))
    if config.seed in fail_seeds:
      raise RuntimeError(f"boom {config.seed}")
    record = results.start(workdir, config, config.num_train_steps, 0)
    for step in (5, 10) if stop_at is None else (stop_at,):
      miou, abs_err, mean = values(config.label_setting, config.seed, step)
      evaluation = {
          "semseg": {"miou": miou, "pixel_acc": 50.0},
          "depth": {"abs_err": abs_err, "rel_err": 0.3},
          "normal": {"mean": mean, "median": 30.0},
      }
      record = results.add_evaluation(record, step, evaluation, None)
      results.write(workdir, record)

  return train_fn, calls


def _values(label_setting, seed, step):
  base = 10.0 if label_setting == "onelabel" else 20.0
  return base + seed + step, 1.0 - 0.1 * seed, 40.0 - step - 2 * seed


def test_failed_missing_and_conflicting_runs_are_reported_not_dropped(tmp_path):
  grid = experiments.make_grid(
      {"onelabel": _config("onelabel"), "full": _config("full")},
      seeds=(0, 1, 2),
      baseline="onelabel",
  )
  # A foreign run sits where full/seed_2 goes: it must be left alone and named.
  foreign = ml_collections.ConfigDict(_config("randomlabels").to_dict())
  conflict_dir = experiments.run_workdir(str(tmp_path), "full", 2)
  results.write(conflict_dir, results.start(conflict_dir, foreign, 10, 0))
  before = open(results.path(conflict_dir)).read()

  train_fn, calls = _fake_train(_values, fail_seeds=(1,))
  logs = []
  runs = experiments.run_grid(grid, str(tmp_path), train_fn=train_fn, log=logs.append)
  status = {(r.name, r.seed): r.status for r in runs}
  assert status == {
      ("onelabel", 0): "done",
      ("onelabel", 1): "failed",
      ("onelabel", 2): "done",
      ("full", 0): "done",
      ("full", 1): "failed",
      ("full", 2): "conflict",
  }
  assert ("full", 2) not in calls and open(results.path(conflict_dir)).read() == before
  failure = json.load(open(os.path.join(tmp_path, "onelabel", "seed_1", "failure.json")))
  assert failure["error"] == "RuntimeError: boom 1"

  text, summary = experiments.report(grid, runs)
  rows = {row["name"]: row for row in summary["final"]}
  assert rows["onelabel"]["num_used"] == 2 and rows["full"]["num_used"] == 1
  np.testing.assert_allclose(rows["onelabel"]["mean"]["semseg/miou"], np.mean([20.0, 22.0]))
  np.testing.assert_allclose(rows["onelabel"]["std"]["semseg/miou"], np.std([20.0, 22.0], ddof=1))
  assert np.isnan(rows["full"]["std"]["semseg/miou"])  # One run: no spread to report.
  assert "| onelabel | 2/3 |" in text and "| full | 1/3 |" in text
  assert "**onelabel**: seed 1 failed: RuntimeError: boom 1 (not counted)" in text
  assert "**full**: seed 2 conflict:" in text and "holds a run of another config" in text

  # A rerun retries only the failed runs; a success clears the failure record.
  train_fn, calls = _fake_train(_values)
  runs = experiments.run_grid(grid, str(tmp_path), train_fn=train_fn, log=logs.append)
  assert sorted(calls) == [("full", 1), ("onelabel", 1)]
  assert not os.path.exists(os.path.join(tmp_path, "onelabel", "seed_1", "failure.json"))
  assert [r.status for r in runs].count("done") == 5


def test_missing_and_incomplete_runs_are_named_in_a_report(tmp_path):
  grid = experiments.make_grid({"onelabel": _config()}, seeds=(0, 1, 2), baseline="onelabel")
  train_fn, _ = _fake_train(_values, stop_at=5)  # Seed 0 stops after its first evaluation.
  experiments.run_grid(
      experiments.make_grid({"onelabel": _config()}, seeds=(0,), baseline="onelabel"),
      str(tmp_path),
      train_fn=train_fn,
      log=lambda _: None,
  )
  runs = experiments.run_grid(grid, str(tmp_path), execute=False, log=lambda _: None)
  assert [r.status for r in runs] == ["incomplete", "missing", "missing"]
  text, _ = experiments.report(grid, runs)
  assert "| onelabel | 0/3 | – |" in text
  assert "seed 0 incomplete: evaluated up to step 5 of 10" in text
  assert "seed 2 missing: not run" in text


def test_summary_stds_are_sample_stds_and_delta_m_uses_the_baseline_mean(tmp_path):
  grid = experiments.make_grid(
      {"onelabel": _config("onelabel"), "full": _config("full")},
      seeds=(0, 1, 2),
      baseline="onelabel",
  )
  train_fn, _ = _fake_train(_values)
  runs = experiments.run_grid(grid, str(tmp_path), train_fn=train_fn, log=lambda _: None)
  rows = {r["name"]: r for r in experiments.summarize(runs, "onelabel", metric_keys=METRICS)}
  ref = {
      k: np.mean([_values("onelabel", s, 10)[i] for s in (0, 1, 2)]) for i, k in enumerate(METRICS)
  }
  for name in ("onelabel", "full"):
    per_seed = np.array([_values(name, s, 10) for s in (0, 1, 2)], np.float64)
    np.testing.assert_allclose([rows[name]["mean"][k] for k in METRICS], per_seed.mean(0))
    np.testing.assert_allclose([rows[name]["std"][k] for k in METRICS], per_seed.std(0, ddof=1))
    gains = (per_seed - [ref[k] for k in METRICS]) / [ref[k] for k in METRICS] * [1, -1, -1]
    np.testing.assert_allclose(rows[name]["delta_m"], 100 * gains.mean(1), atol=1e-9)
  at5 = experiments.summarize(runs, "onelabel", metric_keys=METRICS, step=5)
  np.testing.assert_allclose(at5[0]["mean"]["semseg/miou"], 16.0)  # 10 + mean seed 1 + 5


def test_paired_differences_and_t_test(tmp_path):
  """Paired with the baseline's run of the same seed: per-seed differences, Δm against that run,
  and the paired t-test (df = 2 here: p = 1 − t / √(2 + t²), Student's t CDF in closed form)."""
  noise = {0: 0.0, 1: 3.0, 2: -1.0}  # Per-seed offsets shared by both configs: pairing removes them.

  def values(label_setting, seed, step):
    miou, abs_err, mean = _values("onelabel", seed, step)
    gain = {0: 1.0, 1: 2.0, 2: 3.0}[seed] if label_setting == "full" else 0.0
    return miou + noise[seed] * 5 + gain, abs_err, mean

  grid = experiments.make_grid(
      {"onelabel": _config("onelabel"), "full": _config("full")}, seeds=(0, 1, 2), baseline="onelabel"
  )
  train_fn, _ = _fake_train(values)
  # Seed 2 of the baseline is missing: full's seed 2 has no pair.
  runs = experiments.run_grid(
      experiments.make_grid(grid.configs, (0, 1), "onelabel"), str(tmp_path), train_fn=train_fn,
      log=lambda _: None,
  )
  runs = experiments.run_grid(
      experiments.make_grid({"full": grid.configs["full"]}, (2,), "full"), str(tmp_path),
      train_fn=train_fn, log=lambda _: None,
  )
  runs = experiments.run_grid(grid, str(tmp_path), execute=False, log=lambda _: None)
  rows = {r["name"]: r for r in experiments.summarize(runs, "onelabel", metric_keys=METRICS)}
  paired = rows["full"]["paired"]
  assert paired["seeds"] == [0, 1]
  assert paired["diff"]["semseg/miou"] == pytest.approx([1.0, 2.0])
  assert paired["diff"]["depth/abs_err"] == pytest.approx([0.0, 0.0])
  assert paired["diff_std"]["semseg/miou"] == pytest.approx(np.std([1.0, 2.0], ddof=1))
  # Δm of each run against its own seed's baseline run (only miou differs): gain / miou_base / 3.
  base = [values("onelabel", s, 10)[0] for s in (0, 1)]
  np.testing.assert_allclose(paired["delta_m"], [100 * g / b / 3 for g, b in zip((1, 2), base)])
  assert paired["diff_p"]["depth/abs_err"] == 1.0  # Identical: no evidence of a difference.

  d = np.array([1.0, 2.0, 3.0])
  t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
  assert seed_stats.paired_t_test(d) == pytest.approx(1 - t / np.sqrt(2 + t * t), rel=1e-9)
  assert np.isnan(seed_stats.paired_t_test([1.0]))
  text = result_tables.markdown_table(
      list(rows.values()),
      "onelabel",
      metric_keys=METRICS,
      delta_m_keys=experiments.DEFAULT_DELTA_M_METRICS,
  )
  assert "Paired with `onelabel`'s run of the same seed" in text
  assert "| full | 2 | 1.50 ± 0.71 (p 0.2" in text


def test_gradient_summary_weights_intervals_by_log_steps(tmp_path):
  """Per run, norms averaged over all log steps (intervals weighted by their log steps), the
  ratio of the means, then mean ± std over runs; a run without statistics is left out."""
  stats = {  # seed -> the two intervals' (log_steps, supervised, rdc, cos).
      0: ((1, 1.0, 4.0, -0.5), (3, 2.0, 2.0, 0.5)),
      1: ((2, 1.0, 1.0, 0.0), (2, 3.0, 5.0, 0.2)),
  }

  def train_fn(config, workdir):
    record = results.start(workdir, config, 10, 0)
    for step, interval in zip((5, 10), stats.get(config.seed, (None, None))):
      train = None
      if interval and config.label_setting == "full":
        n, sup, rdc, cos = interval
        train = {"log_steps": n, "grad_norm/supervised": sup, "grad_norm/rdc": rdc,
                 "grad_cos/rdc": cos, "grad_norm/semseg": 0.1}
      evaluation = {"semseg": {"miou": 1.0}, "depth": {"abs_err": 1.0}, "normal": {"mean": 1.0}}
      record = results.add_evaluation(record, step, evaluation, None, train=train)
      results.write(workdir, record)

  grid = experiments.make_grid(
      {"onelabel": _config("onelabel"), "full": _config("full")}, seeds=(0, 1, 2), baseline="onelabel"
  )
  runs = experiments.run_grid(grid, str(tmp_path), train_fn=train_fn, log=lambda _: None)
  (row,) = seed_stats.gradient_summary(runs)  # onelabel logged nothing: no row.
  assert row["name"] == "full" and row["num_runs"] == 2 and row["regularizer"] == "rdc"
  sup = [(1 * 1.0 + 3 * 2.0) / 4, (2 * 1.0 + 2 * 3.0) / 4]
  rdc = [(1 * 4.0 + 3 * 2.0) / 4, (2 * 1.0 + 2 * 5.0) / 4]
  cos = [(1 * -0.5 + 3 * 0.5) / 4, (2 * 0.0 + 2 * 0.2) / 4]
  ratio = np.divide(rdc, sup)
  for key, per_run in (("supervised", sup), ("regularizer", rdc), ("ratio", ratio), ("cos", cos)):
    assert row["mean"][key] == pytest.approx(np.mean(per_run))
    assert row["std"][key] == pytest.approx(np.std(per_run, ddof=1))
  text, summary = experiments.report(grid, runs, metric_keys=METRICS)
  assert summary["gradients"] == [row]
  assert f"| full | 2 | rdc | {np.mean(sup):.3f} ± {np.std(sup, ddof=1):.3f} |" in text


def _flat_keys(config, prefix=""):
  keys = set()
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      keys |= _flat_keys(value, f"{prefix}{key}.")
    else:
      keys.add(prefix + key)
  return keys


SHIPPED_GRIDS = sorted(
    f[: -len(".py")]
    for f in os.listdir(os.path.join(REPO, "configs", "experiments"))
    if f.endswith(".py")
)


@pytest.mark.parametrize("name", SHIPPED_GRIDS)
def test_shipped_grids_load(name):
  grid = experiments.load_grid(os.path.join(REPO, "configs", "experiments", f"{name}.py"))
  assert grid.baseline in grid.configs and len(grid.seeds) >= 3
  # A misspelt override (a key default.py lacks) would train the default instead of the variant.
  expected = _flat_keys(default.get_config())
  for config_name, config in grid.configs.items():
    assert config.dataset.name == "procedural_rooms"
    keys = _flat_keys(config)
    if config.model.name == "mtcp":  # MT-CP's sizes: fields mtcp.settings_from_config checks.
      mtcp.settings_from_config(config.model.mtcp)  # Raises on a misspelt field.
      keys = {k for k in keys if not k.startswith("model.mtcp.")}
    assert keys == expected, config_name
  assert len({results.config_hash(c) for c in grid.configs.values()}) == len(grid.configs)


def test_bad_grids_are_named(tmp_path):
  with pytest.raises(ValueError, match="baseline 'stl'"):
    experiments.make_grid({"a": _config()}, seeds=(0,), baseline="stl")
  with pytest.raises(ValueError, match="distinct"):
    experiments.make_grid({"a": _config()}, seeds=(0, 0), baseline="a")
  with pytest.raises(ValueError, match="plain directory name"):
    experiments.make_grid({"a/b": _config()}, seeds=(0,), baseline="a/b")
  with pytest.raises(ValueError, match="expected a ConfigDict"):
    experiments.make_grid({"a": {"seed": 0}}, seeds=(0,), baseline="a")
  bad = tmp_path / "grid.py"
  bad.write_text(textwrap.dedent("def get_grid():\n  return {'configs': {}}\n"))
  with pytest.raises(ValueError, match="expected a dict with keys"):
    experiments.load_grid(str(bad))
  with pytest.raises(FileNotFoundError, match="nope.py"):
    experiments.load_grid(str(tmp_path / "nope.py"))
  grid = experiments.make_grid({"a": _config(), "b": _config(), "c": _config()}, (0,), "b")
  assert list(experiments.select(grid, ["c", "b"]).configs) == ["b", "c"]
  with pytest.raises(ValueError, match="leaves out the baseline 'b'"):
    experiments.select(grid, ["a"])
  with pytest.raises(ValueError, match=r"\['d'\] are not configs"):
    experiments.select(grid, ["b", "d"])
  with pytest.raises(ValueError, match="'depth'"):
    experiments.summarize([], "a", metric_keys=("depth",))


@pytest.mark.parametrize("key, other", [("async_checkpoints", None), ("steps_per_call", 1)])
def test_execution_keys_leave_a_runs_identity_unchanged(tmp_path, key, other):
  """A config key that changes how a run executes (results.EXECUTION_KEYS) neither enters the hash
  nor turns a finished run into a conflict: neither a run recorded before the key existed nor one
  recorded while the key still entered the hash."""
  import hashlib

  config = default.get_config()
  assert key in results.EXECUTION_KEYS and key in config
  without = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items() if k != key})
  bare = ml_collections.ConfigDict(
      {k: v for k, v in config.to_dict().items() if k not in results.EXECUTION_KEYS}
  )
  old_style = lambda c: hashlib.sha256(c.to_json(sort_keys=True).encode()).hexdigest()
  assert results.config_hash(config) == results.config_hash(without) == old_style(bare)
  flipped = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  flipped[key] = (not config[key]) if other is None else other
  assert flipped[key] != config[key]
  assert results.config_hash(flipped) == results.config_hash(config)
  changed = ml_collections.ConfigDict(config.to_dict())
  changed.learning_rate = 2 * config.learning_rate
  assert results.config_hash(changed) != results.config_hash(config)

  run_config = experiments.run_config(config, 0)
  for name, stored in (("before", without), ("while_hashed", config)):
    workdir = str(tmp_path / name)
    stamp = old_style(stored)
    record = {
        "format": results.FORMAT,
        "config_hash": stamp,
        "config": json.loads(stored.to_json(sort_keys=True)),
        "num_train_steps": 4,
        "evaluations": [
            {"step": 4, "config_hash": stamp, "time": 0.0, "metrics": {"semseg": {"miou": 1.0}}}
        ],
    }
    os.makedirs(workdir)
    with open(os.path.join(workdir, results.FILENAME), "w") as f:
      json.dump(record, f)
    run = experiments.run_state("x", 0, workdir, run_config)
    assert run.status == "done", (name, run.message)
    assert results.read(workdir)["config_hash"] == results.config_hash(run_config)


def test_a_key_added_to_the_defaults_keeps_finished_runs_finished(tmp_path):
  """A run recorded before a key existed in configs/default.py is read with that key's default:
  still done when today's config has the default, a conflict when it has another value."""
  config = default.get_config()
  stored = json.loads(config.to_json(sort_keys=True))
  del stored["model"]["bn_momentum"]  # As if recorded before the key was added.
  canonical = ml_collections.ConfigDict(stored).to_json(sort_keys=True)
  stamp = hashlib.sha256(canonical.encode()).hexdigest()
  record = {
      "format": results.FORMAT,
      "config_hash": stamp,
      "config": stored,
      "num_train_steps": 4,
      "evaluations": [
          {"step": 4, "config_hash": stamp, "time": 0.0, "metrics": {"semseg": {"miou": 1.0}}}
      ],
  }
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / results.FILENAME).write_text(json.dumps(record))
  run = experiments.run_state("x", 0, str(workdir), experiments.run_config(config, 0))
  assert run.status == "done", run.message
  other = ml_collections.ConfigDict(config.to_dict())
  other.model.bn_momentum = 0.5
  run = experiments.run_state("x", 0, str(workdir), experiments.run_config(other, 0))
  assert run.status == "conflict"
  assert results.with_defaults({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}, "d": 4}) == {
      "a": {"b": 1, "c": 3},
      "d": 4,
  }
