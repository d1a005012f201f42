"""MT-CP (Fontana et al., WACV 2025) on PASCAL-Context: its model (`mtjax/models/mtcp.py`) on
semseg, human parts and saliency at 512x512 (the released `models/models_pascal_CL.py` heads:
semseg and human parts upsampled 4x, saliency not), LPS with the released PASCAL spread 1.6.

    python -m mtjax.main --config configs/pascal_context_mtcp.py --workdir runs/pascal_mtcp \
        --config.dataset.data_dir=/path/to/PASCAL_MT

The released recipe and what is not yet as released: as configs/nyudmt_mtcp.py says.
"""

from configs import nyudmt_mtcp, pascal_context


def get_config():
  config = pascal_context.get_config()
  config.tasks = ("semseg", "human_parts", "saliency")
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)
  config.weighting.name = "lps"
  # LPS as released: its rule (raw losses, K = 1), the weights computed and not applied.
  config.weighting.as_released, config.weighting.apply_weights = True, False
  config.weighting.spread = 1.6  # The released PASCAL config's.
  config.optimizer, config.learning_rate, config.weight_decay = "adamw", 5e-5, 1e-4
  config.lr_schedule, config.lr_poly_power, config.num_epochs = "poly", 0.9, 100.0
  config.batch_size = 2
  config.model.name = "mtcp"
  config.model.mtcp = nyudmt_mtcp.get_config().model.mtcp
  config.model.mtcp.head_upsample = {"semseg": 4, "human_parts": 4, "saliency": 1}
  config.model.normalize_input = "imagenet"
  return config
