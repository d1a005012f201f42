"""The RDC paper's main setting (Li et al., ECCV 2024): NYUv2 onelabel, HRNet-W18 pretrained on
ImageNet, region-aware distribution contrast over SAM regions, 20 epochs. What the paper leaves
open (batch, optimiser, schedule, τ, a_θ) follows configs/nyud_hrnet18.py and configs/nyud_rdc.py.

    python -m mtjax.main --config configs/nyud_rdc_hrnet18.py --workdir runs/nyud_rdc_hrnet18 \
        --config.dataset.data_dir=/path/to/nyuv2 --config.regions.dir=/path/to/sam_regions \
        --config.model.pretrained=data/hrnet_w18.msgpack
"""

from configs import nyud_hrnet18, nyud_rdc


def get_config():
  config = nyud_rdc.get_config()
  hr = nyud_hrnet18.get_config()
  config.model = hr.model
  config.num_epochs, config.lr_decay_epochs = hr.num_epochs, hr.lr_decay_epochs
  config.label_setting = "onelabel"
  return config
