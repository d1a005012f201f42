"""Every config field of mtjax with its default. Other configs import this and override a few fields.

Run with `python -m mtjax.main --config configs/<name>.py --workdir DIR [--config.key=value ...]`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # ---- Data ----------------------------------------------------------------------------------
  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "nyuv2"  # nyuv2: MTAN/MTPSL .npy layout (see README).
  # nyuv2: the root holding {train,val}/{image,label,depth,normal}/{i}.npy. procedural_rooms: the
  # TFDS data_dir the generated dataset is built into ("" = TFDS's default).
  config.dataset.data_dir = ""
  config.dataset.builder_config = ""  # TFDS builder config (procedural_rooms: size, resolution).
  config.dataset.train_split = "train"
  config.dataset.eval_split = "val"
  config.dataset.num_classes = 13
  # full | onelabel | randomlabels | path to a float [N, K] .npy mask (K = the dataset's tasks).
  config.label_setting = "onelabel"
  config.tasks = ("semseg", "depth", "normal")

  # ---- Augmentation (MTPSL RandomScaleCrop + horizontal flip) --------------------------------
  config.augment = ml_collections.ConfigDict()
  config.augment.scales = (1.0, 1.2, 1.5)
  config.augment.flip = True

  # ---- Model ---------------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.name = "segnet_mtl"
  config.model.filters = (64, 128, 256, 512, 512)
  config.model.conv_impl = "auto"  # auto | xla | im2col (auto: im2col on CPU, XLA conv elsewhere).

  # ---- Optimisation (MTPSL: Adam 1e-4, x0.5 every 100 epochs, 200 epochs, batch 2) -----------
  config.batch_size = 2  # Global batch, split over all devices of all processes.
  config.learning_rate = 1e-4
  config.lr_decay_every_steps = 39_750  # 100 epochs of 795 images at batch 2.
  config.lr_decay_factor = 0.5
  config.num_train_steps = 79_500  # 200 epochs.
  config.seed = 0

  # ---- Evaluation, logging, checkpoints ------------------------------------------------------
  config.eval_every_steps = 3_975  # 10 epochs.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 3_975
  config.keep_checkpoints = 3  # The latest k are kept, plus the best by Δm.
  config.num_panel_images = 3  # Val examples shown in the TensorBoard image panel.
  # Single-task (STL) references for Δm: "auto" takes MTPSL's NYUv2 STL numbers of the label
  # setting (full | onelabel | randomlabels); name one of those explicitly for a path label setting;
  # "" disables Δm (and so keeping the best checkpoint).
  config.delta_m_reference = "auto"

  return config
