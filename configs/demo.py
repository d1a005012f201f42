"""The embedded default: procedurally rendered rooms (generated on first use, no download), a small
SegNet-MTL, onelabel partial labels. A full train + eval + checkpoint run takes minutes on 2 cores.

    python -m mtjax.main --config configs/demo.py --workdir runs/demo
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "procedural_rooms"
  config.dataset.data_dir = ""  # TFDS's default data dir (~/tensorflow_datasets).
  config.dataset.builder_config = "default"  # 1000 train / 200 validation at 96x128.
  config.dataset.eval_split = "validation"
  config.label_setting = "onelabel"
  # No RandomScaleCrop: it divides depth by the zoom factor, a scale ambiguity that a tiny model
  # does not resolve in a few hundred steps (depth abs_err at step 600: 0.875 m with the MTPSL
  # scales, 0.699 m without). The horizontal flip stays.
  config.augment.scales = (1.0,)
  config.augment.flip = True
  config.model.filters = (16, 32, 64, 64, 64)
  config.batch_size = 8
  config.learning_rate = 1e-3
  config.num_train_steps = 600
  config.lr_decay_epochs = (3.2,)  # Step 400 of 125 steps per epoch.
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  config.log_every_steps = 50
  config.delta_m_reference = ""  # MTPSL's NYUv2 references do not apply to generated rooms.
  return config
