"""Cityscapes 7 classes + disparity at 128x256 (MTAN / MTPSL .npy layout) in MTPSL's setting.

MTPSL's `cityscapes_mtl_xtc.py`: SegNet-MTL, Adam 1e-4 halved entering epochs 99 and 199 of 200,
batch 8 (371 steps per epoch), horizontal flip + RandomScaleCrop {1, 1.2, 1.5}. Depth is the stored
disparity: a zoom by s multiplies it by s (`task_options.depth.units=disparity`; MTPSL divides it,
as for metres). Δm against MTPSL's Cityscapes STL numbers of the label setting (full | onelabel).
The published onelabel split: `python tools/convert_mtpsl_label_settings.py onelabel.pth
cityscapes_onelabel.npy`, then `--config.label_setting=cityscapes_onelabel.npy
--config.delta_m_reference=onelabel`.

    python -m mtjax.main --config configs/cityscapes.py --workdir runs/cityscapes \
        --config.dataset.data_dir=/path/to/cityscapes
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "cityscapes"
  config.dataset.data_dir = "data/cityscapes"
  config.dataset.num_classes = 7
  config.tasks = ("semseg", "depth")
  config.task_options.depth.units = "disparity"
  config.augment.flip = True
  config.batch_size = 8
  config.eval_every_steps = 3_710  # 10 epochs of 371 steps.
  config.checkpoint_every_steps = 3_710
  config.weighting.fixed_weights = (1.0, 1.0)
  return config
