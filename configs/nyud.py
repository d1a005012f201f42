"""NYUv2 13-class (MTAN/MTPSL layout, 288x384), SegNet-MTL, MTPSL schedule, onelabel by default.

    python -m mtjax.main --config configs/nyud.py --workdir runs/nyud \
        --config.dataset.data_dir=/path/to/nyuv2 --config.label_setting=onelabel
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "nyuv2"
  config.dataset.data_dir = "data/nyuv2"
  return config
