"""PASCAL-Context multi-task (4,998 / 5,105; semseg 21, human parts, saliency, normals, edges) in
MT-CP's data setting, onelabel over the five tasks (MTPSL's PASCAL setting).

Every image resized to 512x512 (normals nearest, as MT-CP), flip + centre zoom {1, 1.2, 1.5}
(MTI-Net's PASCAL rotation of ±20° and zoom 0.75-1.25 are not implemented); evaluation resizes
predictions back to the original size; saliency maxF per image and edge odsF as MTI-Net / MT-CP
score them. `--config.dataset.geometry=pad --config.augment.name=scale_pad
--config.augment.photometric=true` gives the ATRC / InvPT setting. No Δm references.

    python -m mtjax.main --config configs/pascal_context.py --workdir runs/pascal \
        --config.dataset.data_dir=/path/to/PASCAL_MT
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "pascal_context"
  config.dataset.data_dir = "data/PASCAL_MT"
  config.dataset.num_classes = 21
  config.dataset.normal_interpolation = "nearest"  # MT-CP utils/config.py; MTI-Net: cubic.
  config.tasks = ("semseg", "human_parts", "saliency", "normal", "edge")
  config.task_options.edge.protocol = "mtinet_pascal"
  config.task_options.saliency.protocol = "per_image"
  config.augment.name = "centre_zoom"
  config.augment.flip = True
  config.num_epochs = 100.0
  config.lr_decay_epochs = (50.0,)
  config.eval_every_steps = 4_990  # 2 epochs of 2,499 steps at batch 2.
  config.checkpoint_every_steps = 4_990
  config.weighting.fixed_weights = (1.0,) * 5
  return config
