"""tools/benchmark_gaussian.py on a tiny case: every row runs and its W2 matrix agrees with the
float64 SciPy reference the tool computes (a broken reference or a broken method shows here)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tiny_case_rows_and_accuracy(tmp_path):
  out = tmp_path / "rows.json"
  cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark_gaussian.py"), "--no_torch"]
  cmd += ["--regions", "4", "--dims", "4", "--height", "12", "--width", "16", "--repeats", "1"]
  cmd += ["--rounds", "2"]
  cmd += ["--json", str(out)]
  subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
  rows = json.loads(out.read_text())
  got = {(r["covariance"], r["impl"]) for r in rows}
  assert got == {("full", "newton_schulz"), ("full", "eigh"), ("diag", "newton_schulz")}
  for row in rows:
    assert row["ms"] > 0
    assert row["steps"] == 2  # One timed step in each of the two rounds, pooled.
    assert row["w2_rel_err"] < 1e-4, row
