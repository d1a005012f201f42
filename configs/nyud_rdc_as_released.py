"""RDC as its code was released (HereNowL/Region-aware-Distribution-Contrast, commit a6fa360), NYUv2
onelabel: what ``nyu_mtl_region_cons_gaussian.py`` trains, where mtjax can express it.

    python tools/convert_released_regions.py --data_dir /path/to/nyuv2 --split train \
        --out data/nyuv2_regions/released
    python -m mtjax.main --config configs/nyud_rdc_as_released.py --workdir runs/nyud_rdc_released \
        --config.dataset.data_dir=/path/to/nyuv2 \
        --config.model.pretrained=data/hrnet_w18_small_v2.msgpack

Reproduced (file:line of the release):

* the region contrast's objective (``model/region_cons.py`` 85-107, 144-175, 201-284;
  ``model/map_cons.py`` 148-182, 227-229): computed and logged (``train/loss/rdc``,
  ``train/rdc/released_loss``), no gradient, the FIFO bank of 1,000 Gaussians and its two oldest
  entries as negatives, weight 2.0 · min(epoch / 20 · 0.075, 0.075)
  (``mtjax/regularizers/rdc_released.py``);
* regions: every 8-bit gray value of ``{split}/sam/{i}.png`` with >= 10 pixels at 144x192
  (``dataset/nyuv2ssl.py`` 138-141; ``tools/convert_released_regions.py``);
* a_θ: filters (16, 24, 32, 32), FiLM convs per stage (2, 2, 3, 3) (``map_cons.py`` 53-102),
  upsampled bilinearly to half the input size (``region_cons.py`` 301-303); FiLM rows Adam 1e-3
  with StepLR(10, 0.5), a_θ's convs with the model (``nyu_mtl_region_cons_gaussian.py`` 116-126);
* two views forwarded as one batch of 2B, supervised loss on the first (lines 238-279);
* HRNet-W18-small-v2 (``model/seg_hrnet.py`` 866-878 loads the small-v2 weights), BatchNorm
  momentum 0.01 in the backbone (line 20), bilinear fuse upsampling (238-241), no input
  normalisation (``NYUv2_crop`` passes the stored image on, ``nyuv2ssl.py`` 132-133; its
  ``Normalize`` class is never applied to it), the normal head's raw output (``models.py``
  105-106);
* Adam 5e-4, CosineAnnealingWarmRestarts(T_0 = 10, eta_min = 1e-6) per epoch, batch 10, 20
  epochs, RandomScaleCrop {1, 1.2, 1.5}, no flip (lines 120-122, 30, 188);
* evaluation every epoch on the test split, the best Δm kept; the released metrics beside the
  correct ones (``config.metrics_as_released``: normals on the raw output, ``utils/evaluation.py``
  45; Δm against the script's hard-coded table, lines 94-98 and 377-381).

* the second view a RandomScaleCrop of the first view's (``nyuv2ssl.py`` 161-162;
  ``config.augment.second_view = "of_first"``).
"""

from configs import nyud


def get_config():
  config = nyud.get_config()
  config.label_setting = "onelabel"
  # Model: HRNet-W18-small-v2 as the release builds it.
  config.model.name = "hrnet_w18_small_v2"
  config.model.pretrained = "data/hrnet_w18_small_v2.msgpack"
  config.model.normalize_input = "none"
  config.model.bn_momentum = 0.01
  config.model.fuse_upsampling = "bilinear"
  config.task_options.normal.head = "raw"
  # Optimisation.
  config.batch_size = 10
  config.num_epochs = 20.0
  config.learning_rate = 5e-4
  config.lr_schedule = "cosine_warm_restarts"
  config.lr_restart_epochs = 10
  config.lr_min = 1e-6
  # The region contrast as released.
  config.regularizer.name = "rdc"
  config.regularizer.mode = "as_released"
  config.regularizer.weight = 1.0  # The per-epoch weight is inside the released term.
  config.regularizer.views = 2
  config.augment.second_view = "of_first"
  config.regularizer.mapping.filters = (16, 24, 32, 32)
  config.regularizer.mapping.convs_per_stage = (2, 2, 3, 3)
  config.regularizer.learning_rate = -1.0  # a_θ's convs: the model's optimizer and schedule.
  config.regularizer.film_learning_rate = 1e-3
  config.regularizer.film_lr_step_epochs = 10
  config.regions.source = "files"
  config.regions.dir = "data/nyuv2_regions/released"
  config.regions.relabel = "none"
  config.regions.max_regions = 256
  # Evaluation each epoch (795 // 10 = 79 steps), the released metrics beside ours.
  config.eval_every_steps = 79
  config.checkpoint_every_steps = 79
  config.log_every_steps = 79
  config.metrics_as_released = True
  return config
