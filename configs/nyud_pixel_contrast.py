"""NYUv2 onelabel with the contrastive multi-task regularization of Yang, Ye, Xu (AAAI 2023) on
SegNet-MTL, as reconstructed in mtjax/regularizers/pixel_contrast.py (docs/methods.md; the paper's
values are not retrievable, the defaults in configs/default.py are ours).

    python -m mtjax.main --config configs/nyud_pixel_contrast.py --workdir runs/nyud_pc \
        --config.dataset.data_dir=/path/to/nyuv2
"""

from configs import nyud


def get_config():
  config = nyud.get_config()
  config.label_setting = "onelabel"
  config.regularizer.name = "pixel_contrast"
  config.regularizer.weight = 0.1  # Ours: the triplet term starts near the margin, 0.5.
  return config
