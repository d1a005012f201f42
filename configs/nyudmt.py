"""NYUD-MT (795 / 654, 40 classes, depth, normals, edges) in MT-CP's data setting, onelabel.

MT-CP / MTI-Net's archive (`config.dataset.archive=mtinet`; atrc | astmt read the other two),
every image resized to 480x640 (normals nearest, as MT-CP), training flip + centre zoom
{1, 1.2, 1.5}; evaluation resizes predictions back to the original size. The ATRC / InvPT
setting instead: `--config.dataset.archive=atrc --config.dataset.geometry=pad
--config.augment.name=scale_pad --config.augment.photometric=true` (448x576 canvas).
SegNet-MTL with the optimisation of configs/default.py for 100 epochs. No Δm: no STL table of
NYUD-MT is published with the code (set `config.delta_m_reference` to a table if you have one).

    python -m mtjax.main --config configs/nyudmt.py --workdir runs/nyudmt \
        --config.dataset.data_dir=/path/to/NYUD_MT
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "nyudmt"
  config.dataset.data_dir = "data/NYUD_MT"
  config.dataset.num_classes = 40
  config.dataset.normal_interpolation = "nearest"  # MT-CP utils/config.py; MTI-Net: cubic.
  config.tasks = ("semseg", "depth", "normal", "edge")
  config.task_options.edge.protocol = "mtinet_nyud"
  config.augment.name = "centre_zoom"
  config.augment.flip = True
  config.num_epochs = 100.0
  config.lr_decay_epochs = (50.0,)
  config.weighting.fixed_weights = (1.0, 1.0, 1.0, 1.0)
  return config
