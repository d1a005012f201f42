"""The scripts of examples/ run as a researcher copies them, and compute what they say."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.linalg
from PIL import Image

from tests.test_main import TINY, run_main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _w2_float64(mu_a, cov_a, mu_b, cov_b):
  root = scipy.linalg.sqrtm(cov_a)
  cross = scipy.linalg.sqrtm(root @ cov_b @ root).real
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * cross))


def test_rdc_example_loss_equals_a_float64_reference_and_training_lowers_it():
  example = _load("rdc_loss_in_your_step")
  rng = np.random.default_rng(0)
  features, targets = rng.normal(size=(2, 1, 6, 6, 3))
  regions = rng.integers(-1, 3, (1, 6, 6)).astype(np.int32)  # 3 regions and unassigned pixels.
  tau, eps = 8.0, 1e-4

  def gaussians(x):
    out = []
    for r in range(3):
      pixels = x[0][regions[0] == r].astype(np.float64)
      centred = pixels - pixels.mean(0)
      out.append((pixels.mean(0), centred.T @ centred / len(pixels) + eps * np.eye(3)))
    return out

  pred, target = gaussians(features), gaussians(targets)
  logits = np.array([[-_w2_float64(*pred[i], *target[j]) / tau for j in range(3)] for i in range(3)])
  expected = np.mean([np.log(np.sum(np.exp(row))) - row[i] for i, row in enumerate(logits)])
  got = example.region_contrast_loss(
      features.astype(np.float32), targets.astype(np.float32), regions, 3, tau
  )
  np.testing.assert_allclose(float(got), expected, rtol=2e-4)

  losses = example.main(["--steps", "30"])
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.6 * losses[0], losses


def test_lps_example_raises_the_slow_tasks_weight():
  history = _load("lps_with_your_optimizer").main(["--epochs", "5"])
  np.testing.assert_array_equal(history[0], [1.0, 1.0, 1.0])  # No history yet after epoch 0.
  for weights in history[1:]:
    assert int(np.argmax(weights)) == 2, history  # The slow task gets the largest weight.
    np.testing.assert_allclose(sum(weights), 3.0, rtol=1e-5)  # Normalised to Σ w = T.


def test_predict_example_draws_a_trained_runs_prediction(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main(
      str(workdir),
      *TINY,
      f"--config.dataset.data_dir={tmp_path / 'tfds'}",
      "--config.dataset.builder_config=tiny",
      "--config.batch_size=4",
      "--config.num_train_steps=2",
      "--config.steps_per_call=1",
      config="configs/demo.py",
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  out = tmp_path / "panel.png"
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(
      [sys.executable, str(EXAMPLES / "predict_from_checkpoint.py"), f"--workdir={workdir}",
       f"--out={out}"],
      env=env, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert done.returncode == 0, done.stderr[-3000:]
  panel = np.asarray(Image.open(out))
  assert panel.shape == (32, 64 * 7, 3)  # image | gt, prediction of semseg, depth, normal.
  assert f"wrote {out}: 448x32" in done.stdout
  predictions = panel[:, 64 * 2 : 64 * 3]  # The semseg prediction: drawn, not blank.
  assert len(np.unique(predictions.reshape(-1, 3), axis=0)) > 1
