"""NYUv2 onelabel with MTPSL's cross-task consistency (Li, Liu, Bilen, CVPR 2022) on SegNet-MTL:
configs/nyud.py plus the xtc regularizer (mtjax/regularizers/xtc.py; METHODS.md §3), MTPSL's
`nyu_mtl_xtc.py` settings: mapping network (64, 128, 256, 512, 512) with 2-2-3-3-3 FiLM convs
(14,819,328 params), weight 2.0, FiLM rows at Adam 1e-3, two augmented views.

    python -m mtjax.main --config configs/nyud_xtc.py --workdir runs/nyud_xtc \
        --config.dataset.data_dir=/path/to/nyuv2
"""

from configs import nyud


def get_config():
  config = nyud.get_config()
  config.label_setting = "onelabel"
  config.regularizer.name = "xtc"
  config.regularizer.weight = 2.0
  config.regularizer.mapping.filters = (64, 128, 256, 512, 512)
  config.regularizer.mapping.convs_per_stage = (2, 2, 3, 3, 3)
  config.regularizer.film_learning_rate = 1e-3
  return config
