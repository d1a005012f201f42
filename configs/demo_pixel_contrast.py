"""The demo with the pixel-contrast regularizer (Yang et al., AAAI 2023, reconstructed):
procedural rooms, onelabel; the projectors read the narrow SegNet's 8-channel head features.

    python -m mtjax.main --config configs/demo_pixel_contrast.py --workdir runs/demo_pc
"""

from configs import demo_onelabel


def get_config():
  config = demo_onelabel.get_config()
  config.regularizer.name = "pixel_contrast"
  config.regularizer.weight = 0.1  # As configs/nyud_pixel_contrast.py.
  return config
