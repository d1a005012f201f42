"""NYUD-MT with MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025) on SegNet-MTL:
configs/nyudmt.py with full labels (MT-CP's setting), its three tasks (edges off, as its NYUD
config) and LPS with the released NYUD spread 7.5 and history 1 (`as_released=true` for the
released rule exactly).

    python -m mtjax.main --config configs/nyudmt_lps.py --workdir runs/nyudmt_lps \
        --config.dataset.data_dir=/path/to/NYUD_MT
"""

from configs import nyudmt


def get_config():
  config = nyudmt.get_config()
  config.label_setting = "full"
  config.tasks = ("semseg", "depth", "normal")
  config.weighting.name = "lps"
  config.weighting.spread = 7.5
  config.weighting.history = 1
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)
  return config
