"""Supervised onelabel vs region-aware distribution contrast on the demo.

    python -m mtjax.experiments --grid configs/experiments/demo_rdc.py \
        --workdir runs/experiments/demo_rdc [--seeds=0,1,2] [--only=rdc]

Configs: the onelabel demo (baseline); RDC (Gaussian, W2, full covariance) at the paper's λ = 1
and at λ = 0.1 and 0.01 (does the harm seen at λ = 1 shrink with λ, vanish, or turn into a gain?);
the vector (cosine) and KL ablations. Everything but the regularizer is the same.
"""

from configs import demo_onelabel, demo_rdc


def get_grid():
  onelabel = demo_onelabel.get_config()
  vector = demo_rdc.get_config()
  vector.regularizer.contrast = "vector"
  vector.regularizer.temperature = 0.1  # Cosine similarities: the usual InfoNCE temperature.
  kl = demo_rdc.get_config()
  kl.regularizer.distance = "kl"
  # KL between ε-shrunk Gaussians is orders of magnitude above W2 (a_θ's smoke runs: ~1e3 nats).
  kl.regularizer.temperature = 1000.0
  # Lighter weights: the first runs of "rdc" (λ = 1) fell below onelabel on every task.
  lighter = {}
  for weight in (0.1, 0.01):
    lighter[f"rdc_lambda{weight:g}"] = demo_rdc.get_config()
    lighter[f"rdc_lambda{weight:g}"].regularizer.weight = weight
  return {
      "configs": {
          "onelabel": onelabel,
          "rdc": demo_rdc.get_config(),
          **lighter,
          "rdc_vector": vector,
          "rdc_kl": kl,
      },
      "seeds": (0, 1, 2),
      "baseline": "onelabel",
  }
