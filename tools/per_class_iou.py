"""Per-class IoU of trained runs: which semantic classes a run has learned.

    python tools/per_class_iou.py runs/experiments/demo_released/onelabel/seed_0 [WORKDIR ...]
        [--json out.json]

For each run workdir, rebuilds the run from the config in its ``results.json``
(``mtjax.run_parts.build_run``), restores its latest checkpoint and scores the evaluation split as
training does (``mtjax.evaluation.eval_step``), then prints, per class, the IoU (%), its share of
the ground-truth pixels and of the predicted pixels (%), and the class name where the dataset has
them. mIoU over the classes present in ground truth or prediction is the run's
``semseg/miou``; a class with IoU 0 that the ground truth holds is a class the run never learned
(the demo's semantic-segmentation "stall", docs/reproducing.md).

Exit status 0 when every workdir was scored; 1 with one message naming the workdir and what was
missing otherwise. Nothing is written into a workdir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

from mtjax import runtime  # noqa: F401  -- first: quiets TensorFlow.  # pylint: disable=g-import-not-at-top

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from mtjax import checkpoint, evaluation, fileio, results, run_parts, sharding  # noqa: E402
from mtjax.data import pipeline, procedural, sources  # noqa: E402

CLASS_NAMES = {"procedural_rooms": procedural.CLASSES}


def per_class(confusion: np.ndarray) -> dict[str, list[float]]:
  """Per-class statistics of a confusion matrix.

  Args:
    confusion: [C, C] pixel counts, rows = ground truth, columns = prediction.

  Returns:
    {"iou": C IoUs in % (NaN for a class absent from both ground truth and prediction),
    "gt_share", "pred_share": C shares of the valid pixels in %}.

  Raises:
    ValueError: the matrix is not square or holds no pixel.
  """
  conf = np.asarray(confusion, np.float64)
  if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
    raise ValueError(f"confusion shape {conf.shape}: expected a square [C, C] matrix")
  total = conf.sum()
  if total == 0:
    raise ValueError("the confusion matrix holds no valid pixel")
  diag = np.diag(conf)
  union = conf.sum(0) + conf.sum(1) - diag
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, diag / union, np.nan) * 100
  return {
      "iou": iou.tolist(),
      "gt_share": (conf.sum(1) / total * 100).tolist(),
      "pred_share": (conf.sum(0) / total * 100).tolist(),
  }


def score(workdir: str) -> dict:
  """{"workdir", "step", "dataset", "classes": names or None, **per_class(...)} of the run's
  latest checkpoint on its evaluation split.

  Raises:
    FileNotFoundError: no results.json or no checkpoint in `workdir`.
    ValueError: the run has no semseg task.
  """
  record = results.read(workdir)
  if record is None:
    raise FileNotFoundError(f"{workdir}: no results.json (not a run workdir of mtjax.train)")
  config = ml_collections.ConfigDict(record["config"])
  if "semseg" not in config.tasks:
    raise ValueError(f"{workdir}: the run's tasks {tuple(config.tasks)} have no semseg")
  parts = run_parts.build_run(config)
  manager = checkpoint.create_manager(workdir, keep=config.keep_checkpoints, async_save=False)
  state = checkpoint.restore_latest(manager, parts.state)
  checkpoint.close(manager)
  if state is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint under {workdir}/checkpoints")
  eval_fn, _ = evaluation.make_eval_fns(config, parts.model, parts.tasks, parts.mesh)
  eval_ds = pipeline.eval_dataset(
      sources.create_source(config, config.dataset.eval_split),
      per_process_batch_size=sharding.per_process_batch_size(config.batch_size),
      tasks=tuple(config.tasks),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )
  confusion = 0
  for batch in eval_ds.as_numpy_iterator():
    out = jax.device_get(eval_fn(state, sharding.global_batch(parts.mesh, batch)))
    confusion = confusion + np.asarray(out["semseg"]["confusion"], np.float64)
  return {
      "workdir": workdir,
      "step": int(state.step),
      "dataset": config.dataset.name,
      "classes": list(CLASS_NAMES.get(config.dataset.name, ())) or None,
      **per_class(confusion),
  }


def format_table(scored: dict) -> str:
  """The per-class rows of one `score` result, as a Markdown table."""
  lines = [
      f"{scored['workdir']} (step {scored['step']}, mIoU {np.nanmean(scored['iou']):.2f})",
      "| class | IoU (%) | gt pixels (%) | predicted pixels (%) |",
      "|---|---|---|---|",
  ]
  names = scored["classes"] or [str(c) for c in range(len(scored["iou"]))]
  for name, iou, gt, pred in zip(names, scored["iou"], scored["gt_share"], scored["pred_share"]):
    lines.append(f"| {name} | {iou:.1f} | {gt:.1f} | {pred:.1f} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("workdirs", nargs="+", help="run workdirs (each with results.json)")
  parser.add_argument("--json", help="also write every run's numbers to this JSON file")
  args = parser.parse_args(argv)
  scored = []
  for workdir in args.workdirs:
    try:
      scored.append(score(workdir))
    except (FileNotFoundError, ValueError) as e:
      print(f"per_class_iou: {e}", file=sys.stderr)
      return 1
    print(format_table(scored[-1]) + "\n")
  if args.json:
    fileio.write_atomic(args.json, json.dumps(scored, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
