"""PASCAL-Context with MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025) on SegNet-MTL:
configs/pascal_context.py with full labels and MT-CP's PASCAL tasks (semseg, human parts, saliency)
and LPS with the released PASCAL spread 1.6 and history 1.

    python -m mtjax.main --config configs/pascal_context_lps.py --workdir runs/pascal_lps \
        --config.dataset.data_dir=/path/to/PASCAL_MT
"""

from configs import pascal_context


def get_config():
  config = pascal_context.get_config()
  config.label_setting = "full"
  config.tasks = ("semseg", "human_parts", "saliency")
  config.weighting.name = "lps"
  config.weighting.spread = 1.6
  config.weighting.history = 1
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)
  return config
