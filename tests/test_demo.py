"""The embedded default: configs/demo.py trains on generated rooms and its loss goes down."""

import numpy as np

from configs import demo
from mtjax import train
from tests.test_main import read_scalars


def test_demo_config_trains_and_loss_decreases(tmp_path):
  config = demo.get_config()
  config.dataset.data_dir = str(tmp_path / "tfds")
  config.dataset.builder_config = "tiny"  # 8 train / 4 validation rooms at 32x64.
  config.model.filters = (8, 8, 16, 16, 16)
  config.batch_size = 4
  config.num_train_steps = 40
  config.eval_every_steps = 40
  config.checkpoint_every_steps = 40
  config.log_every_steps = 1
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 40

  scalars = read_scalars(workdir)
  loss = np.array([scalars["train/loss"][s] for s in range(1, 41)])
  # onelabel: each step sees a different mix of tasks, so compare 10-step means.
  assert loss[-10:].mean() < 0.8 * loss[:10].mean(), loss
  for tag in ("eval/semseg/miou", "eval/depth/abs_err", "eval/normal/mean"):
    assert np.isfinite(scalars[tag][40]), tag
