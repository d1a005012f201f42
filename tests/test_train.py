"""End-to-end trainer runs on tiny configs: train, evaluate, checkpoint, resume, non-finite stop."""

import glob
import os

import jax
import numpy as np
import pytest

from configs import default
from mtjax import calls, checkpoint, evaluation, optimizer, results, run_parts, schedule, train
from tests.test_main import read_scalars
from tests.data_fixtures import make_nyuv2_layout
from tools.bench import synthetic_batch


def tiny_config(data_dir, base=None, **overrides):
  """`base` (default: configs/default.py) shrunk to a tiny model and a few steps, then `overrides`."""
  config = default.get_config() if base is None else base
  config.dataset.data_dir = str(data_dir)
  config.label_setting = "randomlabels"
  config.model.filters = (8, 8, 16, 16, 16)
  config.batch_size = 2
  config.num_train_steps = 4
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  config.keep_checkpoints = 1
  config.num_panel_images = 2
  for key, value in overrides.items():
    config[key] = value
  return config


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


def test_train_evaluate_checkpoint_and_summaries(data_dir, tmp_path):
  workdir = tmp_path / "run"
  state = train.train_and_evaluate(tiny_config(data_dir), str(workdir))
  assert int(state.step) == 4
  # Latest k=1 kept plus the best by Δm (the run evaluates at steps 2 and 4).
  steps = sorted(int(os.path.basename(p)) for p in glob.glob(str(workdir / "checkpoints" / "*")))
  assert 4 in steps and set(steps) <= {2, 4}
  assert glob.glob(str(workdir / "events.out.tfevents.*"))

  # results.json: one entry per evaluation, the same numbers as the TensorBoard scalars.
  record = results.read(str(workdir))
  assert record["num_train_steps"] == 4
  assert record["config_hash"] == results.config_hash(tiny_config(data_dir))
  assert [e["step"] for e in record["evaluations"]] == [2, 4]
  scalars = read_scalars(str(workdir))
  for e in record["evaluations"]:
    for task, values in e["metrics"].items():
      for metric, value in values.items():
        np.testing.assert_allclose(value, scalars[f"eval/{task}/{metric}"][e["step"]], rtol=1e-6)
    np.testing.assert_allclose(e["delta_m"], scalars["eval/delta_m"][e["step"]], rtol=1e-6)
  assert results.final_evaluation(record) is record["evaluations"][-1]
  assert not glob.glob(str(workdir / ".results.*"))  # No temporary file left behind.


def test_rerun_resumes_from_latest_checkpoint_and_matches_uninterrupted_run(data_dir, tmp_path):
  straight = train.train_and_evaluate(tiny_config(data_dir), str(tmp_path / "straight"))

  interrupted = tmp_path / "interrupted"
  train.train_and_evaluate(tiny_config(data_dir, num_train_steps=2), str(interrupted))
  manager = checkpoint.create_manager(str(interrupted), keep=1)
  assert manager.latest_step() == 2
  saved = checkpoint.restore_latest(manager, straight)
  assert int(saved.step) == 2
  resumed = train.train_and_evaluate(tiny_config(data_dir), str(interrupted))

  assert int(resumed.step) == 4
  # The resumed run keeps the evaluation of its first part and appends its own.
  record = results.read(str(interrupted))
  assert [e["step"] for e in record["evaluations"]] == [2, 4]
  assert record["evaluations"][0]["config_hash"] != record["config_hash"]  # num_train_steps 2
  assert results.final_evaluation(record)["step"] == 4
  # Same data stream, same params, optimizer and BatchNorm state: the resumed run is the same run.
  for a, b in zip(_leaves(straight), _leaves(resumed)):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def test_non_finite_loss_stops_without_checkpoint(tmp_path):
  root = tmp_path / "nan_data"
  make_nyuv2_layout(root, splits={"train": 4, "val": 2}, hw=(32, 64), seed=1)
  for path in glob.glob(str(root / "train" / "depth" / "*.npy")):
    depth = np.load(path)
    depth[depth > 0] = np.inf  # Ground truth that makes the depth L1 term infinite.
    np.save(path, depth)
  config = tiny_config(root, label_setting="full")
  with pytest.raises(train.NonFiniteLossError, match=r"step 1: .*loss/depth=(inf|nan)"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "[0-9]*"))


def test_learning_rate_schedule_is_mtpsl_steplr_stepped_at_each_epoch_start():
  # MTPSL, NYUv2: 795 images at batch 2 with drop_last -> 397 steps per epoch; StepLR(100, 0.5)
  # stepped at the start of every epoch: epochs 0-98 at 1e-4, 99-198 at 5e-5, 199 at 2.5e-5.
  config = default.get_config()
  spe = schedule.steps_per_epoch(config, 795)
  assert spe == 397
  assert schedule.num_train_steps(config, 795) == 79_400
  lr = schedule.learning_rate_schedule(config, spe)
  steps = [0, 99 * 397 - 1, 99 * 397, 199 * 397 - 1, 199 * 397, 79_399]
  np.testing.assert_allclose(
      [lr(k) for k in steps], [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5], rtol=1e-6
  )
  # The same epochs at another dataset size and batch: boundaries move with the epoch length.
  config.batch_size = 8
  spe = schedule.steps_per_epoch(config, 1000)
  assert (spe, schedule.num_train_steps(config, 1000)) == (125, 25_000)
  lr = schedule.learning_rate_schedule(config, spe)
  np.testing.assert_allclose([lr(12_374), lr(12_375)], [1e-4, 5e-5], rtol=1e-6)


def test_training_length_steps_override_epochs_and_bad_values_are_named():
  config = default.get_config()
  config.num_train_steps = 7
  assert schedule.num_train_steps(config, 795) == 7
  config.num_train_steps, config.num_epochs = -1, 0.0
  with pytest.raises(ValueError, match="num_epochs"):
    schedule.num_train_steps(config, 795)
  config.num_epochs = 1.0
  with pytest.raises(ValueError, match="batch_size=2"):
    schedule.num_train_steps(config, 1)
  config.lr_decay_epochs = (-1.0,)
  with pytest.raises(ValueError, match="lr_decay_epochs"):
    schedule.learning_rate_schedule(config, 10)


def test_delta_m_references_follow_the_label_setting():
  config = default.get_config()
  config.label_setting = "randomlabels"
  assert evaluation.delta_m_references(config)["depth"] == {"abs_err": 0.754012}
  config.label_setting = "/data/split.npy"
  assert evaluation.delta_m_references(config) is None  # "auto" cannot guess for a path.
  config.delta_m_reference = "onelabel"
  assert evaluation.delta_m_references(config)["semseg"] == {"miou": 26.1113}
  config.delta_m_reference = "twolabels"
  with pytest.raises(ValueError, match="twolabels"):
    evaluation.delta_m_references(config)


def test_steps_in_one_call_are_the_single_steps():
  # make_train_step(stacked=True) scans train_step over stacked batches: the same updates, in order, as
  # separate calls. Each step sees a different batch, so a reordered, skipped or repeated step
  # changes the losses by far more than round-off.
  from mtjax import sharding
  from mtjax.models import registry

  config = default.get_config()
  config.model.filters = (8, 8, 16, 16, 16)
  config.learning_rate = 1e-2  # Updates that move the next losses well beyond round-off.
  model, tx = registry.create_model(config), optimizer.create_optimizer(config, steps_per_epoch=10)
  mesh = sharding.create_mesh()
  batches = [synthetic_batch(2, 32, 64, 3, seed=i) for i in range(3)]
  init = lambda: train.create_train_state(model, tx, jax.random.key(0), (32, 64), mesh)

  state, single = init(), []
  step = train.make_train_step(config, model, tx, mesh)
  for batch in batches:
    state, metrics = step(state, sharding.global_batch(mesh, batch))
    single.append(jax.device_get(metrics))
  state_n, stacked = train.make_train_step(config, model, tx, mesh, stacked=True)(
      init(), sharding.global_batches(mesh, batches)
  )
  stacked = jax.device_get(stacked)
  assert int(state_n.step) == 3 and all(v.shape == (3,) for v in stacked.values())
  for i, metrics in enumerate(single):
    for k, v in metrics.items():
      np.testing.assert_allclose(stacked[k][i], v, rtol=1e-5, atol=1e-6, err_msg=f"{k} step {i}")
  for a, b in zip(_leaves(state.batch_stats), _leaves(state_n.batch_stats)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
  # A wrong order gives other losses.
  swapped = [batches[1], batches[0], batches[2]]
  _, other = train.make_train_step(config, model, tx, mesh, stacked=True)(
      init(), sharding.global_batches(mesh, swapped)
  )
  assert abs(float(other["loss"][0]) - float(single[0]["loss"])) > 1e-3


def test_steps_per_call_resolution():
  assert calls.resolve_steps_per_call(3) == 3 and calls.resolve_steps_per_call("2") == 2
  expected = calls.CPU_STEPS_PER_CALL if jax.default_backend() == "cpu" else 1
  assert calls.resolve_steps_per_call("auto") == expected
  for bad in (0, -1, "x", 2.5, None):
    with pytest.raises(ValueError, match="steps_per_call"):
      calls.resolve_steps_per_call(bad)


def test_calls_of_several_steps_stop_at_every_log_eval_and_checkpoint(data_dir, tmp_path):
  # 3 steps per call with logging every 3, evaluation and checkpoints every 5 steps of 7: calls
  # of 3, 2, 1, 1 steps (ending at 3, 5, 6, 7). Every step's metrics are logged and checked, and
  # the run is the run of one step per call.
  overrides = dict(num_train_steps=7, log_every_steps=3, eval_every_steps=5)
  overrides.update(checkpoint_every_steps=5)
  run = lambda k, name: train.train_and_evaluate(
      tiny_config(data_dir, steps_per_call=k, **overrides), str(tmp_path / name)
  )
  one, three = run(1, "one"), run(3, "three")
  assert int(three.step) == 7
  for name in ("one", "three"):
    record = results.read(str(tmp_path / name))
    assert [e["step"] for e in record["evaluations"]] == [5, 7]
  s1, s3 = read_scalars(str(tmp_path / "one")), read_scalars(str(tmp_path / "three"))
  assert sorted(s3["train/loss"]) == [3, 6, 7]
  for step, value in s1["train/loss"].items():
    np.testing.assert_allclose(s3["train/loss"][step], value, rtol=1e-3)
  steps = sorted(int(os.path.basename(p)) for p in glob.glob(str(tmp_path / "three/checkpoints/*")))
  assert 7 in steps and set(steps) <= {5, 7}
  for a, b in zip(_leaves(one.batch_stats), _leaves(three.batch_stats)):
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)


def test_kill_while_an_async_checkpoint_is_written_leaves_only_committed_ones(data_dir, tmp_path):
  """SIGKILL as soon as the first checkpoint starts to appear on disk (mid-write, asynchronous
  saves): the manager sees only committed checkpoints, and a rerun resumes from one of them (or
  from scratch) and finishes."""
  import signal
  import subprocess
  import sys
  import time

  from tests.test_main import REPO

  workdir = tmp_path / "run"
  command = [
      sys.executable, "-m", "mtjax.main", "--config=configs/nyud.py", f"--workdir={workdir}",
      f"--config.dataset.data_dir={data_dir}", "--config.label_setting=randomlabels",
      "--config.model.filters=(8,8,16,16,16)", "--config.batch_size=2",
      "--config.num_train_steps=6", "--config.eval_every_steps=6",
      "--config.checkpoint_every_steps=2", "--config.log_every_steps=2", "--config.steps_per_call=1",
  ]  # fmt: skip
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(
      command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  checkpoints = workdir / "checkpoints"
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and proc.poll() is None:
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
      break
    time.sleep(0.01)
  seen = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.is_dir() else []
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert seen, "no checkpoint started before the run ended"
  manager = checkpoint.create_manager(str(workdir), keep=3)
  committed = manager.all_steps()
  assert set(committed) <= {2, 4, 6}
  if committed:  # The latest committed one restores whole.
    config = tiny_config(data_dir)
    state = run_parts.build_run(config).state
    assert int(checkpoint.restore_latest(manager, state).step) == max(committed)
  checkpoint.close(manager)
  rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
  assert results.final_evaluation(results.read(str(workdir)))["step"] == 6


def test_steps_per_call_benchmark_runs_both_calls_to_the_same_state(data_dir):
  """tools/benchmark_steps_per_call.py's comparison: a round of n one-step calls and one call of
  n steps from copies of one state time both and end in the same state (same updates)."""
  from tools.benchmark_steps_per_call import compare

  config = tiny_config(data_dir)
  config.steps_per_call = 2
  lines = []
  out = compare(config, rounds=1, report=lines.append)
  assert out["steps_per_call"] == 2 and len(out["one"]) == len(out["several"]) == 1
  assert min(out["one"] + out["several"]) > 0 and len(lines) == 2 and "-> 2" in lines[0]
  one, several = out["states"]["one"], out["states"]["several"]
  assert int(one.step) == int(several.step) == 4  # Warm-up round and one timed round, 2 each.
  for a, b in zip(_leaves(one.params), _leaves(several.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
