"""The papers' methods as released vs as written, on the demo, onelabel (five seeds, paired).

    python -m mtjax.experiments --grid configs/experiments/demo_released.py \
        --workdir runs/experiments/demo_released

Configs (everything else is the onelabel demo, configs/demo_onelabel.py):

* ``onelabel``: supervised, the baseline every run is paired with (same seed);
* ``onelabel_raw_normals``: supervised with the released normal head (its output not
  normalised; the loss normalises): the correct normal metric beside the released one on the
  same runs, how much scoring raw predictions flatters;
* ``rdc_as_released``: RDC's released objective (no gradient; its bank and two negatives; the
  per-epoch weight) with its two-view 2B forward (the second view of the first) and released
  a_θ (16, 24, 32, 32) x (2, 2, 3, 3); the rooms' instance ids play the gray values;
* ``rdc_paper_lambda{0.03, 0.1, 0.3}``: the paper's loss at the released knobs (τ 5.4, the
  released a_θ, two views, the weight ramped linearly per epoch over the whole run as the
  release's 20 epochs: ``weight_ramp_epochs`` = the demo's 12) to three final weights;
* ``rdc_semantic_gt``: the paper's loss with ground-truth class regions (Table 4's oracle);
* ``xtc_mtpsl``: MTPSL's recipe scaled to the demo: two scale-crop views, the second of the
  first, a mapping network as wide and as deep as the model's encoder (MTPSL's is SegNet's:
  widths 64-512, convs (2, 2, 3, 3, 3)), FiLM StepLR over a sixth of the run (MTPSL: 30 of 200
  epochs);
* ``demo_xtc``: configs/demo_xtc.py as it is.

Every run logs train/grad_norm/<term> and the released metrics beside the correct ones.
"""

from configs import demo_onelabel, demo_rdc, demo_xtc


def _common(config):
  config.label_setting = "onelabel"
  config.log_grad_norms = True
  config.metrics_as_released = True
  return config


def _released_a_theta(config):
  config.regularizer.mapping.filters = (16, 24, 32, 32)
  config.regularizer.mapping.convs_per_stage = (2, 2, 3, 3)
  return config


def get_grid():
  onelabel = _common(demo_onelabel.get_config())

  released = _released_a_theta(_common(demo_rdc.get_config()))
  released.regularizer.mode = "as_released"
  released.regularizer.weight = 1.0
  released.regularizer.views = 2
  released.augment.second_view = "of_first"
  released.regions.source, released.regions.relabel = "instance", "none"
  released.regions.max_regions = 256

  raw_normals = _common(demo_onelabel.get_config())
  raw_normals.task_options.normal.head = "raw"

  configs = {
      "onelabel": onelabel,
      "onelabel_raw_normals": raw_normals,
      "rdc_as_released": released,
  }
  for weight in (0.03, 0.1, 0.3):
    paper = _released_a_theta(_common(demo_rdc.get_config()))
    paper.regularizer.temperature = 5.4
    paper.regularizer.weight = weight
    paper.regularizer.weight_ramp_epochs = 12
    paper.regularizer.views = 2
    paper.augment.second_view = "of_first"
    paper.regions.loss_stride = 16  # a_θ's stride.
    paper.regions.min_pixels = 1
    configs[f"rdc_paper_lambda{weight:g}"] = paper

  semantic = _common(demo_rdc.get_config())
  semantic.regions.source = "semantic_gt"
  configs["rdc_semantic_gt"] = semantic

  xtc = _common(demo_xtc.get_config())
  xtc.augment.scales = (1.0, 1.2, 1.5)
  xtc.augment.second_view = "of_first"
  xtc.regularizer.mapping.convs_per_stage = (2, 2, 3, 3, 3)  # SegNet's encoder, as MTPSL's.
  xtc.regularizer.film_lr_step_epochs = 2  # 12 epochs / 6, as MTPSL's 30 of 200.
  configs["xtc_mtpsl"] = xtc
  configs["demo_xtc"] = _common(demo_xtc.get_config())
  return {"configs": configs, "seeds": (0, 1, 2, 3, 4), "baseline": "onelabel"}
