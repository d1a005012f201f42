"""tools/benchmark_checkpoint.py on a tiny state: both modes save, commit and report."""

import os
import re

from tools import benchmark_checkpoint


def test_benchmark_saves_both_modes_and_reports_the_stall(tmp_path, capsys):
  benchmark_checkpoint.main(
      ["--config", "configs/demo.py", "--saves", "2", "--height", "32", "--width", "64",
       "--workdir", str(tmp_path)]
  )  # fmt: skip
  out = capsys.readouterr().out
  for mode in ("sync", "async"):
    line = next(l for l in out.splitlines() if l.startswith(mode))
    blocked, committed = map(float, re.findall(r"([\d.]+) ms,? ", line)[:2])
    assert 0 < blocked <= committed + 1e-6, line
    (run,) = [d for d in os.listdir(tmp_path) if d.startswith(f"benchmark_{mode}_")]
    assert sorted(os.listdir(tmp_path / run / "checkpoints")) == ["1", "2"]
  assert re.search(r"state [\d.]+ MiB at 32x64", out)
