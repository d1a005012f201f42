"""`WORKDIR/results.json`: a run's evaluations, machine-readable without TensorBoard.

The trainer rewrites the file atomically (a temporary file in the same directory, then
`os.replace`) after every evaluation, so a reader sees the previous complete file or the new one,
never a partial one. Layout (`FORMAT` = "mtjax.results/1"):

    {
      "format": "mtjax.results/1",
      "config_hash": "<sha256 of the run's config>",   # of the latest (re)start
      "config": {...},                                 # that config, as JSON
      "num_train_steps": 600,
      "evaluations": [                                 # ascending step, one per evaluation
        {"step": 200, "config_hash": "...", "time": 1700000000.0,
         "metrics": {"semseg": {"miou": 12.3, ...}, "depth": {...}, "normal": {...}},
         "delta_m": -3.1},                             # null when Δm is disabled or undefined
        ...
      ]
    }

Metric names and units are `mtjax.metrics.finalize`'s (mIoU and accuracies in %, depth errors in
metres, normal angles in degrees); a task absent from the evaluation split maps to {}. A run is
finished when its last evaluation is at `num_train_steps` under the current config hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import ml_collections

from mtjax import fileio

__all__ = [
    "EXECUTION_KEYS",
    "FILENAME",
    "FORMAT",
    "add_evaluation",
    "config_hash",
    "final_evaluation",
    "path",
    "read",
    "start",
    "write",
]


FORMAT = "mtjax.results/1"
FILENAME = "results.json"


# Top-level config keys that change how a run executes, not what it computes (the same updates, the
# same evaluations): left out of `config_hash`, so a run keeps its identity (and the experiment
# harness its finished runs) when such a key is added to configs/default.py or changed.
EXECUTION_KEYS = ("async_checkpoints", "steps_per_call")


def config_hash(config: ml_collections.ConfigDict) -> str:
  """sha256 hex digest of the config's canonical JSON (keys sorted) without `EXECUTION_KEYS`:
  equal configs, equal hash. A config without those keys hashes as before they existed."""
  if any(key in config for key in EXECUTION_KEYS):
    config = ml_collections.ConfigDict(
        {k: v for k, v in config.to_dict().items() if k not in EXECUTION_KEYS}
    )
  return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()


def with_defaults(stored: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
  """``stored`` (a run's config as JSON) with every key it lacks taken from ``defaults``
  (recursively): the config a run recorded before those keys existed ran under, given the rule
  that a key is added to configs/default.py with a default that keeps the old behaviour."""
  out = dict(stored)
  for key, value in defaults.items():
    if key not in out:
      out[key] = value
    elif isinstance(value, Mapping) and isinstance(out[key], Mapping):
      out[key] = with_defaults(out[key], value)
  return out


def _rehashed(record: dict[str, Any], defaults: Mapping[str, Any] | None) -> dict[str, Any]:
  """`record` with the hash of its stored config recomputed by today's `config_hash` (and every
  evaluation that carried the stored hash given the new one), the keys it lacks filled from
  ``defaults`` first: a record written while an execution key still entered the hash, or before
  a key was added to configs/default.py, reads as one written today."""
  old = record.get("config_hash")
  stored = record["config"] if defaults is None else with_defaults(record["config"], defaults)
  new = config_hash(ml_collections.ConfigDict(stored))
  if old == new:
    return record
  evaluations = [
      {**e, "config_hash": new} if e.get("config_hash") == old else e
      for e in record.get("evaluations", [])
  ]
  return {**record, "config_hash": new, "evaluations": evaluations}


def path(workdir: str) -> str:
  """`workdir`/results.json (`workdir` a local path or a gs:// URL)."""
  return os.fspath(fileio.as_path(workdir) / FILENAME)


def read(workdir: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
  """The run record of `workdir`, or None when it has no results.json yet; its hash as
  `_rehashed` says (``defaults``: configs/default.py's config as a dict, to fill the keys a
  record written before they existed lacks).

  Raises:
    ValueError: the file exists but is not JSON of format `FORMAT` (named, with what was found).
  """
  try:
    record = fileio.read_versioned_json(path(workdir), FORMAT, "a run record")
  except FileNotFoundError:
    return None
  return _rehashed(record, defaults) if "config" in record else record


def write(workdir: str, record: Mapping[str, Any]) -> None:
  """Writes `record` to `workdir`/results.json atomically (`fileio.write_atomic`)."""
  fileio.write_atomic(path(workdir), json.dumps(record, indent=1))


def start(
    workdir: str, config: ml_collections.ConfigDict, num_train_steps: int, start_step: int
) -> dict[str, Any]:
  """The record a (re)started run continues: the evaluations already in `workdir` up to
  `start_step` (those after it are redone by the resumed run), under the current config.

  Raises:
    ValueError: an unreadable results.json (see `read`); it is left as it is.
  """
  previous = read(workdir)
  evaluations = [] if previous is None else previous["evaluations"]
  return {
      "format": FORMAT,
      "config_hash": config_hash(config),
      "config": json.loads(config.to_json(sort_keys=True)),
      "num_train_steps": int(num_train_steps),
      "evaluations": [e for e in evaluations if e["step"] <= start_step],
  }


def add_evaluation(
    record: dict[str, Any],
    step: int,
    results: Mapping[str, Mapping[str, float]],
    delta_m: float | None,
    train: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """`record` with the evaluation at `step` appended (replacing one at the same step).

  ``train``: training statistics of the steps since the previous evaluation, stored as the
  entry's "train" (``train.train_and_evaluate``: {"log_steps": n, "grad_norm/<term>": mean,
  "grad_cos/<term>": mean} over its log steps, when it logs gradient norms).
  """
  entry = {
      "step": int(step),
      "config_hash": record["config_hash"],
      "time": time.time(),
      "metrics": {task: dict(values) for task, values in results.items()},
      "delta_m": delta_m,
  }
  if train:
    entry["train"] = dict(train)
  evaluations = [e for e in record["evaluations"] if e["step"] != step] + [entry]
  return {**record, "evaluations": sorted(evaluations, key=lambda e: e["step"])}


def final_evaluation(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
  """The evaluation at `num_train_steps` under the record's current config hash, or None when
  the run has not finished (or has no record)."""
  if not record or not record["evaluations"]:
    return None
  last = record["evaluations"][-1]
  if last["step"] == record["num_train_steps"] and last["config_hash"] == record["config_hash"]:
    return last
  return None
