"""Statistics over seeds for the experiment harness (``mtjax.experiments``): mean ± sample std,
the paired t-test, and the gradients each loss term sent into the model, per config."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["gradient_summary", "mean_std", "paired_t_test"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std (ddof = 1; NaN for fewer than two values) of the finite values."""
  v = np.asarray([x for x in values if math.isfinite(x)], np.float64)
  if v.size == 0:
    return math.nan, math.nan
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def paired_t_test(differences: Sequence[float]) -> float:
  """Two-sided p-value of the paired t-test: a one-sample t-test of the per-seed differences
  against 0 (t = mean / (std_ddof1 / √n), n − 1 degrees of freedom; Student 1908). NaN for
  fewer than two finite differences; 0 or 1 when they are all equal (std 0): 1 if all are 0."""
  d = np.asarray([x for x in differences if math.isfinite(x)], np.float64)
  if d.size < 2:
    return math.nan
  sd = d.std(ddof=1)
  if sd == 0:
    return 1.0 if np.all(d == 0) else 0.0
  from scipy import stats  # pylint: disable=g-import-not-at-top

  t = d.mean() / (sd / math.sqrt(d.size))
  return float(2.0 * stats.t.sf(abs(t), d.size - 1))


def _run_gradients(run) -> dict[str, Any]:
  """One run's mean gradient statistics over all its log steps (`gradient_summary`)."""
  intervals = list(run.train.values())
  steps = sum(t.get("log_steps", 0) for t in intervals)

  def mean(key):
    if not steps or any(key not in t for t in intervals):
      return math.nan
    return sum(t.get("log_steps", 0) * t[key] for t in intervals) / steps

  keys = set().union(*(t.keys() for t in intervals))
  names = sorted(k.split("/", 1)[1] for k in keys if k.startswith("grad_cos/"))
  supervised = mean("grad_norm/supervised")
  reg = mean(f"grad_norm/{names[0]}") if names else math.nan
  return {
      "names": names,
      "supervised": supervised,
      "regularizer": reg,
      "ratio": reg / supervised if supervised > 0 else math.nan,
      "cos": mean(f"grad_cos/{names[0]}") if names else math.nan,
  }


def gradient_summary(runs: Sequence[Any]) -> list[dict[str, Any]]:
  """Per config, the gradient norms its finished runs' loss terms sent into the model.

  ``runs``: ``experiments.Run`` s (name, status, train); the norms are ``train/grad_norm/<term>``
  (``config.log_grad_norms``), read from the "train" statistics of their results.json.

  Per run, each term's norm is averaged over all its log steps (each evaluation interval weighted
  by its log steps); the regularizer's ratio is its mean norm over the mean norm of the supervised
  terms' summed gradient (``grad_norm/supervised``), and its cosine with that gradient is averaged
  the same way. Then mean ± std (ddof = 1) over the runs.

  Returns:
    [{"name", "num_runs" (finished runs with statistics), "regularizer" (name or None), "mean",
    "std": {"supervised", "regularizer", "ratio", "cos": float (NaN where absent)}}], configs in
    the order of `runs`, those without statistics left out.
  """
  rows = []
  for name in dict.fromkeys(r.name for r in runs):
    per_run = [_run_gradients(r) for r in runs if r.name == name and r.status == "done" and r.train]
    if not per_run:
      continue
    keys = ("supervised", "regularizer", "ratio", "cos")
    stats = {k: mean_std([x[k] for x in per_run]) for k in keys}
    rows.append(
        {
            "name": name,
            "num_runs": len(per_run),
            "regularizer": ", ".join(sorted({n for x in per_run for n in x["names"]})) or None,
            "mean": {k: v[0] for k, v in stats.items()},
            "std": {k: v[1] for k, v in stats.items()},
        }
    )
  return rows
