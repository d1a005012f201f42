"""Each benchmark's config trains 2 steps from the command line on a tiny dataset written in the
real on-disk format, evaluates every task's metrics and writes a checkpoint."""

import os

import numpy as np
import pytest

from tests.data_fixtures import make_cityscapes_layout
from tests.nyudmt_fixtures import make_nyudmt_layout
from tests.pascal_fixtures import make_pascal_layout
from tests.test_main import TINY, read_scalars, run_main

TWO_STEPS = [
    "--config.num_train_steps=2",
    "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.batch_size=2",
    "--config.label_setting=full",
]

# config, writer of the data, extra flags, {task: metrics that must be logged}.
CASES = {
    "nyudmt": (
        "configs/nyudmt.py",
        lambda root: make_nyudmt_layout(
            root, splits={"train": 4, "val": 3}, hw=(32, 64), size_jitter=6
        ),
        [
            "--config.dataset.size=(32,64)",
            "--config.task_options.edge.eval_workers=None",
        ],
        {
            "semseg": ("miou",),
            "depth": ("rmse", "abs_err"),
            "normal": ("mean",),
            "edge": ("odsF",),
        },
    ),
    "nyudmt_atrc_pad": (
        "configs/nyudmt.py",
        lambda root: make_nyudmt_layout(
            root,
            archive="atrc",
            splits={"train": 4, "val": 3},
            hw=(32, 64),
            size_jitter=6,
        ),
        [
            "--config.dataset.archive=atrc",
            "--config.dataset.geometry=pad",
            "--config.dataset.size=(32,64)",
            "--config.augment.name=scale_pad",
            "--config.augment.photometric=true",
            "--config.tasks=('semseg','normal')",
            "--config.weighting.fixed_weights=(1.0,1.0)",
        ],
        {"semseg": ("miou",), "normal": ("mean",)},
    ),
    "pascal_context": (
        "configs/pascal_context.py",
        lambda root: make_pascal_layout(
            root, splits={"train": 4, "val": 3}, hw_list=((16, 16), (20, 24), (24, 18))
        ),
        [
            "--config.dataset.size=(32,32)",
            "--config.task_options.edge.eval_workers=None",
        ],
        {
            "semseg": ("miou",),
            "human_parts": ("miou",),
            "saliency": ("maxF",),
            "normal": ("mean",),
            "edge": ("odsF",),
        },
    ),
    "cityscapes": (
        "configs/cityscapes.py",
        lambda root: make_cityscapes_layout(root, splits={"train": 4, "val": 3}, hw=(32, 64)),
        [],
        {"semseg": ("miou",), "depth": ("abs_err",)},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_trains_evaluates_and_checkpoints(tmp_path, case):
  config, write, flags, expected = CASES[case]
  data = write(tmp_path / "data")
  workdir = str(tmp_path / "run")
  proc = run_main(
      workdir,
      f"--config.dataset.data_dir={data}",
      *TWO_STEPS,
      *TINY,
      *flags,
      config=config,
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
  scalars = read_scalars(workdir)
  for task, names in expected.items():
    assert 2 in scalars.get(f"train/loss/{task}", {}), (task, sorted(scalars))
    for name in names:
      tag = f"eval/{task}/{name}"
      assert 2 in scalars.get(tag, {}), (tag, sorted(scalars))
      assert np.isfinite(scalars[tag][2]), tag
