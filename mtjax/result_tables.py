"""Markdown tables of the experiment harness's summaries (``mtjax.experiments``): the per-config
table of mean ± std and Δm, the paired comparison, and the gradient statistics. Rendering only:
the numbers come from ``experiments.summarize`` and ``seed_stats.gradient_summary``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtjax import metrics
from mtjax import tasks as tasks_lib

__all__ = ["gradient_table", "markdown_table", "paired_table"]


def _cell(mean: float, std: float, digits: int) -> str:
  if not math.isfinite(mean):
    return "–"
  mean = round(mean, digits) + 0.0  # No "-0.00".
  return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f} ± –"


def _digits(key: str) -> int:
  """Decimals of a "<task>/<metric>" table cell: the task record's ``decimals`` (2 if unknown)."""
  task, metric = key.split("/")[:2]
  decimals = tasks_lib.get_task(task).decimals if task in tasks_lib.names() else {}
  return decimals.get(metric, 2)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    baseline: str,
    *,
    metric_keys: Sequence[str],
    delta_m_keys: Sequence[str],
) -> str:
  """The Markdown table of ``experiments.summarize`` rows (one per config, or per config and step),
  the paired table below it, and the runs that are not counted listed last.

  Args:
    rows: ``summarize``'s rows. baseline: the baseline config's name (Δm is against it).
    metric_keys: "<task>/<metric>" columns. delta_m_keys: the metrics Δm averages (named below).
  """
  arrows = {
      k: "↑" if metrics.HIGHER_IS_BETTER.get(k.split("/")[1], True) else "↓" for k in metric_keys
  }
  with_step = any(row["step"] is not None for row in rows)
  header = ["config", *(["step"] if with_step else []), "runs"]
  header += [f"{k} {arrows[k]}" for k in metric_keys] + [f"Δm vs {baseline} (%) ↑"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [row["name"], *([str(row["step"])] if with_step else [])]
    cells.append(f"{row['num_used']}/{row['num_runs']}")
    cells += [_cell(row["mean"][k], row["std"][k], _digits(k)) for k in metric_keys]
    cells.append(_cell(row["delta_m_mean"], row["delta_m_std"], 2))
    lines.append("| " + " | ".join(cells) + " |")
  notes = [
      "",
      "Mean ± sample std (ddof = 1) over the seeds that finished; Δm (MTPSL's relative gain, "
      f"over {', '.join(delta_m_keys)}) of each run against the mean of `{baseline}`.",
  ]
  notes += ["", *paired_table(rows, baseline, metric_keys=metric_keys).splitlines()]
  seen = set()
  for row in rows:
    for problem in row["problems"]:
      if (row["name"], problem) not in seen:
        seen.add((row["name"], problem))
        notes.append(f"- **{row['name']}**: {problem} (not counted)")
  return "\n".join(lines + notes) + "\n"


def _p(p: float) -> str:
  return "–" if not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}")


def paired_table(
    rows: Sequence[Mapping[str, Any]], baseline: str, *, metric_keys: Sequence[str]
) -> str:
  """The Markdown table of the paired comparison (``summarize``'s ``paired``): per config, the
  mean ± std over seeds of (run − the baseline's run of the same seed) per metric, and Δm of
  each run against its own seed's baseline run, each with its paired t-test p-value."""
  header = ["config", "pairs", *(f"Δ {k}" for k in metric_keys), f"paired Δm vs {baseline} (%)"]
  lines = [
      f"Paired with `{baseline}`'s run of the same seed (mean ± std over seeds, p: paired t-test):",
      "",
      "| " + " | ".join(header) + " |",
      "|" + "---|" * len(header),
  ]
  for row in rows:
    paired = row.get("paired")
    if paired is None or row["name"] == baseline:
      continue
    cells = [row["name"], str(len(paired["seeds"]))]
    for k in metric_keys:
      cell = _cell(paired["diff_mean"][k], paired["diff_std"][k], _digits(k))
      cells.append(cell if cell == "–" else f"{cell} (p {_p(paired['diff_p'][k])})")
    cell = _cell(paired["delta_m_mean"], paired["delta_m_std"], 2)
    cells.append(cell if cell == "–" else f"{cell} (p {_p(paired['delta_m_p'])})")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def gradient_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """The Markdown table of ``seed_stats.gradient_summary`` rows ("" when there is none)."""
  if not rows:
    return ""
  lines = [
      "Gradients into the model's parameters (mean over each run's log steps; mean ± std over "
      "runs): ‖g_sup‖ of the weighted supervised terms, ‖g_reg‖ of λ · L_reg, their ratio and "
      "cosine:",
      "",
      "| config | runs | regularizer | ‖g_sup‖ | ‖g_reg‖ | ‖g_reg‖ / ‖g_sup‖ | cos(g_sup, g_reg) |",
      "|---|---|---|---|---|---|---|",
  ]
  for row in rows:
    cells = [row["name"], str(row["num_runs"]), row["regularizer"] or "–"]
    keys = ("supervised", "regularizer", "ratio", "cos")
    cells += [_cell(row["mean"][k], row["std"][k], 3) for k in keys]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
