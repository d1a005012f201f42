"""Build the model of a finished run from its config, load its latest checkpoint, predict on one
validation image and save the panel: image | ground truth, prediction per task.

    python -m mtjax.main --config configs/demo.py --workdir runs/demo        # a run to load
    python examples/predict_from_checkpoint.py --workdir runs/demo --out panel.png [--index 0]

The run's config is read back from ``WORKDIR/results.json`` (every override included), so the
model, its tasks and its dataset are the run's own. ``--workdir`` may be a gs:// URL.
"""

import argparse
import io

from mtjax import runtime  # noqa: F401  -- first: quiets TensorFlow's start-up logs.

import jax
import ml_collections
import numpy as np
from PIL import Image

from mtjax import checkpoint, evaluation, fileio, results, run_parts
from mtjax.data import sources


def predict_panel(workdir: str, index: int = 0) -> np.ndarray:
  """uint8 [H, (1 + 2T) W, 3]: validation example ``index`` of the run in ``workdir`` and the
  predictions of its latest checkpoint (each task drawn by its ``Task.to_rgb``).

  Raises:
    FileNotFoundError: ``workdir`` holds no results.json or no checkpoint.
    IndexError: ``index`` outside the validation split.
  """
  record = results.read(workdir)
  if record is None:
    raise FileNotFoundError(f"{workdir}: no results.json (not a run of mtjax.main)")
  config = ml_collections.ConfigDict(record["config"])
  parts = run_parts.build_run(config)  # Model, tasks and a fresh state of the right structure.
  manager = checkpoint.create_manager(workdir, keep=config.keep_checkpoints, async_save=False)
  state = checkpoint.restore_latest(manager, parts.state)
  checkpoint.close(manager)
  if state is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint under {workdir}/checkpoints")
  _, predict = evaluation.make_eval_fns(config, parts.model, parts.tasks, parts.mesh)

  example = sources.create_source(config, config.dataset.eval_split).load(index)
  outputs = jax.device_get(predict(state, example["image"][None].astype(np.float32)))
  columns = [np.round(np.clip(example["image"], 0, 1) * 255).astype(np.uint8)]
  for task in parts.tasks:
    gt = np.asarray(example[task.name])[None]
    prediction = np.asarray(task.to_gt_format(outputs[task.name]))
    columns += [task.to_rgb(gt, gt)[0], task.to_rgb(prediction, gt)[0]]
  return np.concatenate(columns, axis=1)


def main(argv=None) -> np.ndarray:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a run's workdir (local or gs://)")
  parser.add_argument("--out", required=True, help="the PNG to write (local or gs://)")
  parser.add_argument("--index", type=int, default=0, help="validation example (default 0)")
  args = parser.parse_args(argv)
  panel = predict_panel(args.workdir, args.index)
  png = io.BytesIO()
  Image.fromarray(panel).save(png, format="PNG")
  fileio.write_atomic(args.out, png.getvalue())
  print(f"wrote {args.out}: {panel.shape[1]}x{panel.shape[0]}")
  return panel


if __name__ == "__main__":
  main()
