"""The data-dependent cost of RDC's full-covariance W2 on a config's own batch: the Newton–Schulz
iterations its cross terms need, and the FLOPs they make. XLA's cost analysis and
``tools/roofline.py``'s jaxpr count see a loop's body once, whatever its trip count, so neither
counts these iterations.

    python tools/rdc_w2_iterations.py --config configs/nyud_rdc_hrnet18.py \\
        --config.dataset.data_dir=/data/nyuv2 --config.regions.dir=/data/sam_regions

Builds the config's run (``run_parts.build_run``: the initial parameters of its seed), reads the
first training batch, runs the model in training mode on it as training does
(``objective.forward_views``: with ``config.regularizer.views = 2`` both views as one batch, the
regularizer reading the second), a_θ on every slot and the regions at its stride
(``rdc.mapped_regions``), the region Gaussians of both maps (``rdc.slot_gaussians``, the config's
R and ε) and counts each image pair's R x R iterations (``gaussian.newton_schulz_iterations``):
the loss's own functions, so the counts are those ``rdc.rdc_loss`` iterates.

Reports the image pairs that count (valid slots), the pairs of regions, the iterations per pair
(mean, median, max) and GFLOP per train step of the cross terms: 4 D³ per pair and iteration
(the iteration's two [D, D] matmuls) and, per pair, 2 D³ to form M = S_b S_a and 4 D³ for its
gradient (two matmuls). This is the least the cross terms cost: the staged iteration runs some
pairs past their count, and the R + S square roots (eigendecompositions) are not counted. The
counts change as training moves the features; these are at initialisation.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtjax import runtime  # noqa: E402,F401  (before TensorFlow: quiets its C++ banners)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mtjax import objective, train  # noqa: E402
from mtjax.ops import gaussian  # noqa: E402
from mtjax.regularizers import mapping, rdc  # noqa: E402

FLAGS = flags.FLAGS


def cross_term_cost(config) -> dict:
  """Newton–Schulz iterations and cross-term FLOPs of ``config``'s first training batch (module
  docstring).

  Returns:
    {"slots": valid image pairs, "pairs": region pairs of valid slots, "dim": D, "iterations":
    int32 [N, R, R] of every slot (valid or not), "slot_valid": bool [N], "gflop": cross-term
    GFLOP per step (valid slots only: the loss masks the rest, but XLA computes every slot, see
    "gflop_all_slots")}.

  Raises:
    ValueError: the config's regularizer is not RDC's region contrast with full covariance and W2
      (the only one with these loops); as ``run_parts.build_run``.
  """
  reg = config.regularizer
  if (reg.name, reg.mode, reg.contrast, reg.distance, reg.covariance, reg.extraction) != (
      "rdc",
      "paper",
      "gaussian",
      "w2",
      "full",
      "region",
  ):
    raise ValueError(
        "rdc_w2_iterations counts the W2 cross terms of RDC's paper mode with full covariance "
        "over regions: expected regularizer name 'rdc', mode 'paper', contrast 'gaussian', "
        "distance 'w2', covariance 'full', extraction 'region'; got "
        f"{reg.name!r}, {reg.mode!r}, {reg.contrast!r}, {reg.distance!r}, {reg.covariance!r}, "
        f"{reg.extraction!r}"
    )
  parts, _, batches = train.step_of_run(config)
  batch = {k: jnp.asarray(v) for k, v in batches[0].items()}
  settings = rdc.settings_from_config(
      config,
      config.tasks,
      config.dataset.num_classes,
      mapping.max_directed_pairs(parts.label_mask),
  )
  state = parts.state
  views = objective.forward_views(
      state.params,
      state.batch_stats,
      batch,
      model=parts.model,
      regularizer=parts.regularizer,
      rng=jax.random.key(0),
  )
  f_pred, f_gt, ids, slot_valid, settings = rdc.mapped_regions(
      state.reg_params, settings, dict(views.reg_predictions), views.reg_batch, jax.random.key(1)
  )
  _, cov_pred, _, cov_gt, _ = rdc.slot_gaussians(f_pred, f_gt, ids, settings)
  # The order of pairwise_wasserstein2's call in rdc._region_logits: a = prediction, b = truth.
  iterations = np.asarray(gaussian.newton_schulz_iterations(cov_pred, cov_gt))
  valid = np.asarray(slot_valid).astype(bool)
  dim = cov_pred.shape[-1]
  per_pair = 6 * dim**3  # M forward (2 D³) and its gradient (4 D³).
  gflop = lambda it: (4 * dim**3 * it.sum() + per_pair * it.size) / 1e9
  return {
      "slots": int(valid.sum()),
      "pairs": int(iterations[valid].size),
      "dim": dim,
      "iterations": iterations,
      "slot_valid": valid,
      "gflop": float(gflop(iterations[valid])),
      "gflop_all_slots": float(gflop(iterations)),
  }


def main(argv):
  del argv
  config = FLAGS.config
  cost = cross_term_cost(config)
  it = cost["iterations"][cost["slot_valid"]]
  print(
      f"{config.model.name} + RDC (full covariance, R = {config.regions.max_regions}, D = "
      f"{cost['dim']}), batch {config.batch_size}: {cost['slots']} valid image pairs of "
      f"{cost['iterations'].shape[0]} slots, {cost['pairs']} region pairs; Newton–Schulz "
      f"iterations per pair mean {it.mean():.2f}, median {np.median(it):.0f}, max {it.max()}; "
      f"cross terms {cost['gflop']:.1f} GFLOP per step ({cost['gflop_all_slots']:.1f} over all "
      "slots, as XLA computes them)"
  )


def _define_flags() -> None:
  config_flags.DEFINE_config_file("config", None, "Training configuration file.")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
