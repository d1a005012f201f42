"""NYUD-MT onelabel with the contrastive multi-task regularization of Yang, Ye, Xu
(AAAI 2023), as reconstructed in mtjax/regularizers/pixel_contrast.py: configs/nyudmt.py plus the
regularizer with configs/nyud_pixel_contrast.py's weight (ours; the paper's values are not
retrievable).

    python -m mtjax.main --config configs/nyudmt_pixel_contrast.py --workdir runs/nyudmt_pc \
        --config.dataset.data_dir=/path/to/data
"""

from configs import nyudmt


def get_config():
  config = nyudmt.get_config()
  config.label_setting = "onelabel"
  config.regularizer.name = "pixel_contrast"
  config.regularizer.weight = 0.1
  return config
