"""NYUv2 13-class (MTAN/MTPSL layout, 288x384) in MTPSL's setting, onelabel by default.

MTPSL's `nyu_mtl_sl.py`, all from configs/default.py: SegNet-MTL, Adam 1e-4 for 200 epochs at batch
2 (397 steps per epoch, 79,400 steps), halved entering epochs 99 and 199, RandomScaleCrop
{1.0, 1.2, 1.5} and no flip (`--config.augment.flip=true` adds one).

    python -m mtjax.main --config configs/nyud.py --workdir runs/nyud \
        --config.dataset.data_dir=/path/to/nyuv2 --config.label_setting=onelabel
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "nyuv2"
  config.dataset.data_dir = "data/nyuv2"
  return config
