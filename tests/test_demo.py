"""The embedded default: configs/demo.py trains on generated rooms and its loss goes down."""

import numpy as np

from configs import demo, demo_rdc
from mtjax import train
from tests.test_main import TINY, read_scalars, run_main
from tests.test_train import tiny_config


def test_demo_config_trains_and_loss_decreases(tmp_path):
  config = tiny_config(
      tmp_path / "tfds",
      base=demo.get_config(),
      label_setting="onelabel",
      batch_size=4,
      num_train_steps=40,
      eval_every_steps=40,
      checkpoint_every_steps=40,
      lr_decay_epochs=(),  # The demo's decay epochs are steps 10 and 14 of 8 tiny rooms.
  )
  config.dataset.builder_config = "tiny"  # 8 train / 4 validation rooms at 32x64.
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 40

  scalars = read_scalars(workdir)
  loss = np.array([scalars["train/loss"][s] for s in range(1, 41)])
  # onelabel: each step sees a different mix of tasks, so compare 10-step means.
  assert loss[-10:].mean() < 0.8 * loss[:10].mean(), loss
  for tag in ("eval/semseg/miou", "eval/depth/abs_err", "eval/normal/mean"):
    assert np.isfinite(scalars[tag][40]), tag


def test_contact_sheet_layout_and_instance_colours():
  from mtjax.data import contact_sheet, procedural

  examples = [procedural.render_scene(seed, 32, 48) for seed in (0, 1)]
  sheet = contact_sheet.contact_sheet(examples)
  assert sheet.shape == (64, 288, 3) and sheet.dtype == np.uint8
  np.testing.assert_array_equal(sheet[:32, :48], examples[0]["image"])
  edge = examples[1]["edge"][..., 0]  # Last panel: edges white, the rest black.
  np.testing.assert_array_equal(sheet[32:, 240:, 0], np.where(edge == 1, 255, 0))
  instance = examples[1]["instance"]
  rgb = contact_sheet.instance_to_rgb(instance)
  for region in np.unique(instance):
    colours = np.unique(rgb[instance == region], axis=0)
    assert len(colours) == 1  # One colour per region; none (-1) is black.
    assert (region >= 0) or not colours.any()


def test_first_run_log_says_what_happens(tmp_path):
  # A newcomer's first command: the dataset is generated, not downloaded, and a CPU-only machine
  # is named as such instead of JAX's "Unable to initialize backend 'tpu'".
  proc = run_main(
      str(tmp_path / "run"),
      *TINY,
      f"--config.dataset.data_dir={tmp_path / 'tfds'}",
      "--config.dataset.builder_config=tiny",
      "--config.batch_size=4",
      "--config.num_train_steps=1",
      config="configs/demo.py",
  )
  log = proc.stdout + proc.stderr
  assert proc.returncode == 0, log[-3000:]
  assert "generating procedural_rooms/tiny: 16 rooms at 32x64, nothing is downloaded" in log
  assert "procedural_rooms: train 8/8 rooms rendered" in log
  assert "no GPU or TPU found, so training runs on the CPU" in log
  confusing_lines = (
      "Downloading and preparing",
      "Unknown size",
      "Unable to initialize backend",
      "has no dataset_info.json",
  )
  for confusing in confusing_lines:
    assert confusing not in log, confusing


def test_demo_rdc_config_trains_with_finite_decreasing_loss(tmp_path):
  config = tiny_config(
      tmp_path / "tfds",
      base=demo_rdc.get_config(),
      batch_size=4,
      num_train_steps=30,
      eval_every_steps=30,
      checkpoint_every_steps=30,
      lr_decay_epochs=(),
  )
  config.dataset.builder_config = "tiny"  # 8 train / 4 validation rooms at 32x64.
  config.label_setting = "onelabel"
  config.regions.min_pixels = 1
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 30
  scalars = read_scalars(workdir)
  loss = np.array([scalars["train/loss"][s] for s in range(1, 31)])
  rdc = np.array([scalars["train/loss/rdc"][s] for s in range(1, 31)])
  assert np.all(np.isfinite(loss)) and np.all(np.isfinite(rdc))
  assert min(scalars["train/rdc/valid_regions"].values()) > 0
  assert loss[-10:].mean() < 0.8 * loss[:10].mean(), loss
