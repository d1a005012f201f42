"""Cityscapes onelabel with region-aware distribution contrast (Li et al., ECCV 2024, Table 2):
configs/cityscapes.py plus L_RC over regions exported ahead of time (tools/export_regions.py
--dataset cityscapes). 100 epochs as RDC trains Cityscapes; a_θ, τ and ε as configs/default.py.

    python -m mtjax.main --config configs/cityscapes_rdc.py --workdir runs/cityscapes_rdc \
        --config.dataset.data_dir=/path/to/cityscapes --config.regions.dir=/path/to/regions
"""

from configs import cityscapes


def get_config():
  config = cityscapes.get_config()
  config.label_setting = "onelabel"
  config.regularizer.name = "rdc"
  config.regions.source = "files"
  config.regions.dir = "data/cityscapes_regions/sam"
  config.regions.max_regions = 32
  config.regions.loss_stride = 4  # a_θ's output stride (2 ** len(regularizer.mapping.filters)).
  config.num_epochs = 100.0
  config.lr_decay_epochs = (49.0, 99.0)
  return config
