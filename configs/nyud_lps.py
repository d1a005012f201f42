"""NYUv2 with MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025) on SegNet-MTL:
configs/nyud.py plus the LPS task weighting (mtjax/weighting/; docs/methods.md, "Task weightings").

    python -m mtjax.main --config configs/nyud_lps.py --workdir runs/nyud_lps \
        --config.dataset.data_dir=/path/to/nyuv2 --config.label_setting=full \
        [--config.weighting.history=3] [--config.weighting.as_released=true]

Spread β = 7.5 as the released NYUD config (2.5 in the paper's text); history K = 1 as released.
Clipping at 0.05 and Σ w = T are ours (`as_released=true` drops both, and the log projection).
"""

from configs import nyud


def get_config():
  config = nyud.get_config()
  config.weighting.name = "lps"
  config.weighting.spread = 7.5
  config.weighting.history = 1
  return config
