"""The command line: real NYUv2 frames end to end, config locking, bad data errors."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.data_fixtures import SHARED_DATA

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.filters=(8,8,16,16,16)", "--config.log_every_steps=1"]


def run_main(workdir, *overrides, config="configs/nyud.py", env=None):
  cmd = [
      sys.executable,
      "-m",
      "mtjax.main",
      f"--config={config}",
      f"--workdir={workdir}",
      *overrides,
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def read_scalars(workdir):
  """{tag: {step: value}} from the TensorBoard event files in `workdir`."""
  scalars = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return scalars


def test_trains_and_evaluates_on_real_nyuv2_frames(tmp_path):
  mini = os.path.join(SHARED_DATA, "nyuv2_mini")
  if not os.path.isdir(mini):
    pytest.skip(f"real NYUv2 frames not found at {mini} (../shared beside the repository)")
  workdir = str(tmp_path / "run")
  proc = run_main(
      workdir,
      f"--config.dataset.data_dir={mini}",
      f"--config.label_setting={mini}/train_labelled_tasks.npy",
      "--config.delta_m_reference=full",
      "--config.num_train_steps=2",
      "--config.eval_every_steps=2",
      "--config.checkpoint_every_steps=2",
      *TINY,
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
  scalars = read_scalars(workdir)
  for tag in (
      "train/loss",
      "train/loss/semseg",
      "train/loss/depth",
      "train/loss/normal",
      "train/learning_rate",
      "eval/semseg/miou",
      "eval/semseg/pixel_acc",
      "eval/depth/abs_err",
      "eval/depth/rel_err",
      "eval/depth/rmse",
      "eval/delta_m",
  ):
    assert 2 in scalars.get(tag, {}), (tag, sorted(scalars))
    assert np.isfinite(scalars[tag][2]), tag
  # The real val frames have no normals: the task is reported absent, not as 0 or NaN.
  assert not [t for t in scalars if t.startswith("eval/normal/")]
  assert "no ground truth in the val split for ['normal']" in proc.stdout
  assert "steps/s" in proc.stdout and "ETA" in proc.stdout
  # A percentage (after two steps the tiny model may predict only classes absent there: 0).
  assert 0 <= scalars["eval/semseg/pixel_acc"][2] <= 100
  assert 0 <= scalars["eval/semseg/miou"][2] <= 100


def test_unknown_config_key_is_an_error(tmp_path):
  proc = run_main(str(tmp_path / "run"), "--config.no_such_key=1")
  assert proc.returncode != 0
  assert "no_such_key" in proc.stderr
  assert not os.path.exists(tmp_path / "run")


def test_missing_data_dir_names_path_and_layout(tmp_path):
  missing = str(tmp_path / "nowhere")
  proc = run_main(str(tmp_path / "run"), f"--config.dataset.data_dir={missing}")
  assert proc.returncode != 0
  output = proc.stdout + proc.stderr
  assert missing in output and "{image,label,depth,normal}" in output
