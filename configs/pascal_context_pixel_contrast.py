"""PASCAL-Context onelabel with the contrastive multi-task regularization of Yang, Ye, Xu
(AAAI 2023), as reconstructed in mtjax/regularizers/pixel_contrast.py: configs/pascal_context.py plus the
regularizer with configs/nyud_pixel_contrast.py's weight (ours; the paper's values are not
retrievable).

    python -m mtjax.main --config configs/pascal_context_pixel_contrast.py --workdir runs/pascal_context_pc \
        --config.dataset.data_dir=/path/to/data
"""

from configs import pascal_context


def get_config():
  config = pascal_context.get_config()
  config.label_setting = "onelabel"
  config.regularizer.name = "pixel_contrast"
  config.regularizer.weight = 0.1
  return config
