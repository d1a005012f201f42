"""The regularizers of partially labelled multi-task learning on the demo, onelabel: supervised
only, MTPSL's cross-task consistency, pixel contrast and RDC.

    python -m mtjax.experiments --grid configs/experiments/demo_regularizers.py \
        --workdir runs/experiments/demo_regularizers [--seeds=0,1,2] [--only=xtc]

Everything but config.regularizer (and the region source RDC needs) is configs/demo_onelabel.py's.
"""

from configs import demo_onelabel, demo_pixel_contrast, demo_rdc, demo_xtc


def get_grid():
  onelabel = demo_onelabel.get_config()
  return {
      "configs": {
          "onelabel": onelabel,
          "xtc": demo_xtc.get_config(),
          "pixel_contrast": demo_pixel_contrast.get_config(),
          "rdc": demo_rdc.get_config(),
      },
      "seeds": (0, 1, 2),
      "baseline": "onelabel",
  }
