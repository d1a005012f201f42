"""Trivial baselines: fitted statistics and scores against direct float64 NumPy computations."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mtjax import baselines

H, W, C = 4, 6, 3


def _examples(seed, n):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    semseg = rng.integers(-1, C, (H, W)).astype(np.int32)
    depth = rng.uniform(0.5, 5.0, (H, W, 1)).astype(np.float32)
    depth[rng.uniform(size=(H, W)) < 0.3] = 0
    normal = rng.normal(size=(H, W, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal[rng.uniform(size=(H, W)) < 0.3] = 0
    out.append({"semseg": semseg, "depth": depth, "normal": normal})
  return out


def test_fit_matches_numpy():
  train = _examples(0, 7)
  fitted = baselines.fit(train, ("semseg", "depth", "normal"), C)
  sem = np.stack([e["semseg"] for e in train])
  dep = np.stack([e["depth"] for e in train]).astype(np.float64)
  nor = np.stack([e["normal"] for e in train]).astype(np.float64)

  majority = np.bincount(sem[sem >= 0], minlength=C).argmax()
  np.testing.assert_array_equal(fitted["constant"]["semseg"], np.full((H, W), majority))
  np.testing.assert_allclose(fitted["constant"]["depth"], dep[dep > 0].mean(), rtol=1e-6)
  mean_dir = nor.reshape(-1, 3).sum(0)
  np.testing.assert_allclose(
      fitted["constant"]["normal"][1, 2], mean_dir / np.linalg.norm(mean_dir), rtol=1e-6
  )

  for i, j in [(0, 0), (2, 3), (3, 5)]:
    counts = np.bincount(sem[:, i, j][sem[:, i, j] >= 0], minlength=C)
    assert fitted["per_pixel"]["semseg"][i, j] == counts.argmax()
    d = dep[:, i, j, 0]
    np.testing.assert_allclose(fitted["per_pixel"]["depth"][i, j, 0], d[d > 0].mean(), rtol=1e-6)
    n = nor[:, i, j].sum(0)
    np.testing.assert_allclose(
        fitted["per_pixel"]["normal"][i, j], n / np.linalg.norm(n), rtol=1e-5
    )


def test_evaluate_constant_depth_and_semseg_match_numpy():
  train, val = _examples(0, 5), _examples(1, 70)  # 70 > one chunk of 64.
  fitted = baselines.fit(train, ("semseg", "depth"), C)
  results = baselines.evaluate(fitted, val, C)
  gt = np.stack([e["depth"] for e in val]).astype(np.float64)
  pred = float(fitted["constant"]["depth"][0, 0, 0])
  valid = gt > 0
  np.testing.assert_allclose(
      results["constant"]["depth"]["abs_err"], np.abs(pred - gt[valid]).mean(), rtol=1e-5
  )
  sem = np.stack([e["semseg"] for e in val])
  labelled = sem >= 0
  acc = (sem[labelled] == fitted["constant"]["semseg"][0, 0]).mean() * 100
  np.testing.assert_allclose(results["constant"]["semseg"]["pixel_acc"], acc, rtol=1e-6)
  assert set(results) == {"constant", "per_pixel"}
  assert set(results["per_pixel"]) == {"semseg", "depth"}


def test_bad_input_is_named():
  train = _examples(0, 2)
  train[1] = {k: v[:2] for k, v in train[1].items()}
  with pytest.raises(ValueError, match="one shape"):
    baselines.fit(train, ("depth",), C)
  with pytest.raises(ValueError, match="no train example"):
    baselines.fit([], ("depth",), C)
  with pytest.raises(ValueError, match="unknown task"):
    baselines.fit(_examples(0, 1), ("edges",), C)
  no_depth = [{**e, "depth": np.zeros_like(e["depth"])} for e in _examples(0, 2)]
  with pytest.raises(ValueError, match="no valid depth"):
    baselines.fit(no_depth, ("depth",), C)


def test_cli_on_tiny_procedural_rooms(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
      [
          sys.executable,
          "-m",
          "mtjax.baselines",
          "--config",
          os.path.join(repo, "configs", "demo.py"),
          f"--config.dataset.data_dir={tmp_path}",
          "--config.dataset.builder_config=tiny",
      ],
      cwd=repo,
      capture_output=True,
      text=True,
      timeout=600,
      env={**os.environ, "PYTHONPATH": repo, "JAX_PLATFORMS": "cpu"},
  )
  assert out.returncode == 0, out.stderr[-3000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith(("constant", "per_pixel"))]
  assert len(lines) == 6, out.stdout
  assert "scored on validation (4)" in out.stdout
