"""tools/rdc_w2_iterations.py: the counts it reports are the ones RDC's loss iterates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax import train
from mtjax.ops import gaussian
from tests.test_rdc import _rdc_config
from tools import rdc_w2_iterations


@pytest.mark.parametrize("views", [1, 2])
def test_counts_are_those_of_the_train_step_on_the_same_batch(data_dir, monkeypatch, views):
  config = _rdc_config(data_dir)
  config.regularizer.gumbel = False  # The argmax: a_θ's inputs do not depend on a key.
  config.regularizer.views = views  # 2: both views forwarded as one batch, RDC on the second.
  cost = rdc_w2_iterations.cross_term_cost(config)
  its = cost["iterations"]
  assert its.ndim == 3 and its.shape[1:] == (8, 8) and its.shape[0] % config.batch_size == 0
  assert its.min() >= 1 and its.max() <= 40 and cost["dim"] == 8
  valid = its[cost["slot_valid"]]
  assert cost["pairs"] == valid.size == 64 * cost["slots"]
  assert cost["gflop"] == pytest.approx((4 * 8**3 * valid.sum() + 6 * 8**3 * valid.size) / 1e9)

  # The train step itself, on the same state and batch, records what its Newton–Schulz iterates.
  recorded = []
  count = gaussian._ns_iterations

  def recording(ell):
    need = count(ell)
    jax.debug.callback(lambda n: recorded.append(np.asarray(n)), need)
    return need

  monkeypatch.setattr(gaussian, "_ns_iterations", recording)
  parts, step, batches = train.step_of_run(config)
  step(parts.state, {k: jnp.asarray(v) for k, v in batches[0].items()})
  assert recorded
  for need in recorded:
    np.testing.assert_array_equal(need.reshape(its.shape), its)


def test_rejects_configs_without_the_loops(data_dir):
  config = _rdc_config(data_dir)
  config.regularizer.covariance = "diag"
  with pytest.raises(ValueError, match="covariance 'full'"):
    rdc_w2_iterations.cross_term_cost(config)
