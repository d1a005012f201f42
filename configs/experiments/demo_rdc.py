"""Supervised onelabel vs region-aware distribution contrast on the demo (issue 9's comparison).

    python -m mtjax.experiments --grid configs/experiments/demo_rdc.py \
        --workdir runs/experiments/demo_rdc [--seeds=0,1,2] [--only=rdc]

Configs: the onelabel demo (baseline), RDC (Gaussian, W2, full covariance) at λ = 1 and 0.1, and
the vector (cosine) and KL ablations. Everything but the regularizer is the same.
"""

from configs import demo, demo_rdc


def get_grid():
  onelabel = demo.get_config()
  onelabel.label_setting = "onelabel"
  vector = demo_rdc.get_config()
  vector.regularizer.contrast = "vector"
  vector.regularizer.temperature = 0.1  # Cosine similarities: the usual InfoNCE temperature.
  kl = demo_rdc.get_config()
  kl.regularizer.distance = "kl"
  # KL between ε-shrunk Gaussians is orders of magnitude above W2 (a_θ's smoke runs: ~1e3 nats).
  kl.regularizer.temperature = 1000.0
  # λ = 0.1: the first run of "rdc" (λ = 1) fell below onelabel on every task.
  light = demo_rdc.get_config()
  light.regularizer.weight = 0.1
  return {
      "configs": {
          "onelabel": onelabel,
          "rdc": demo_rdc.get_config(),
          "rdc_lambda0.1": light,
          "rdc_vector": vector,
          "rdc_kl": kl,
      },
      "seeds": (0, 1, 2),
      "baseline": "onelabel",
  }
