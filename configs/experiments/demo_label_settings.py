"""The demo under each label setting, three seeds each: what partial labels cost on generated rooms.

    python -m mtjax.experiments --grid configs/experiments/demo_label_settings.py \
        --workdir runs/experiments/demo_label_settings
"""

from configs import demo


def _with_labels(label_setting):
  config = demo.get_config()
  config.label_setting = label_setting
  return config


def get_grid():
  return {
      "configs": {name: _with_labels(name) for name in ("full", "randomlabels", "onelabel")},
      "seeds": (0, 1, 2),
      "baseline": "full",
  }
