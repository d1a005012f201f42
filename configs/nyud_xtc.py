"""NYUv2 onelabel with MTPSL's cross-task consistency (Li, Liu, Bilen, CVPR 2022) on SegNet-MTL, as
MTPSL's `nyu_mtl_xtc.py` (VICO-UoE/MTPSL) runs it: configs/nyud.py plus the xtc regularizer
(mtjax/regularizers/xtc.py; docs/methods.md) with

* the mapping network (64, 128, 256, 512, 512), 2-2-3-3-3 FiLM convs (14,819,328 params), weight
  2.0 (``--con-weight``), its convs in the model's optimizer (lines 74-79);
* the model's Adam 1e-4 with StepLR(100, 0.5) stepped after each of the 200 epochs (lines 78-79
  and the ``scheduler.step()`` at the end of the epoch loop): halved entering epoch 100, where
  ``nyu_mtl_sl.py`` (configs/nyud.py) steps at the start of each epoch and halves entering 99;
* the FiLM rows' Adam 1e-3 with its own StepLR(30, 0.5), stepped after each epoch (lines 82-83);
* two views, the second a RandomScaleCrop of the first view's (``dataset/nyuv2ssl.py`` lines
  102-105: zooms multiply, up to 2.25x).

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
  config.regularizer.film_lr_step_epochs = 30
  config.lr_decay_epochs = (100.0,)
  config.augment.second_view = "of_first"
  return config
