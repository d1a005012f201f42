"""train/grad_norm/<term>: the gradient each loss term sends into the model's parameters, against
each term differentiated on its own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mtjax import objective, regularizers, weighting
from mtjax import tasks as tasks_lib
from mtjax.models import registry
from mtjax.tasks import partial_label_terms
from tools.bench import synthetic_batch


def _norm(tree):
  return float(
      np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree)))
  )


@pytest.mark.parametrize("regularized", [False, True])
def test_term_norms_equal_each_term_differentiated_alone(regularized):
  config = default.get_config()
  config.model.filters = (8, 8, 8, 8, 8)
  if regularized:
    config.regularizer.name = "pixel_contrast"
    config.regularizer.weight = 0.7
  model = registry.create_model(config)
  tasks = tasks_lib.from_config(config)
  batch = {k: jnp.asarray(v) for k, v in synthetic_batch(2, 32, 32, 3).items()}
  batch["label_mask"] = jnp.asarray([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
  variables = model.init(jax.random.key(0), batch["image"][:1], train=False)
  reg = None
  reg_params = {}
  if regularized:
    reg = regularizers.create(config, np.ones((4, 3), np.float32), 13, (32, 32))
    reg_params = reg.init(jax.random.key(1), (32, 32))
  params = {"model": variables["params"], "regularizer": reg_params, "weighting": {}}
  w = weighting.create(config, 3, steps_per_epoch=1)
  task_weights = jnp.asarray([0.5, 2.0, 1.0])
  kwargs = {
      "model": model,
      "tasks": tasks,
      "regularizer": reg,
      "rng": jax.random.key(3),
      "task_weighting": w,
  }
  got = objective.term_gradient_norms(
      params, variables["batch_stats"], batch, task_weights=task_weights, **kwargs
  )

  def apply(model_params):
    out, updates = model.apply(
        {"params": model_params, "batch_stats": variables["batch_stats"]},
        batch["image"],
        train=True,
        mutable=["batch_stats", "features"],
        rngs={"dropout": jax.random.key(3)},
    )
    return out, updates

  used = w.combine(jnp.ones((1, 3)), jnp.ones(3), 2, {}, task_weights)[2]
  for t, task in enumerate(tasks):

    def term(model_params, t=t):
      out, _ = apply(model_params)
      sums, _, batch_size = partial_label_terms(out, batch, tasks)
      return used[t] * sums[t] / batch_size

    want = _norm(jax.grad(term)(params["model"]))
    assert want > 0
    np.testing.assert_allclose(float(got[f"grad_norm/{task.name}"]), want, rtol=2e-4)

  def total(model_params):
    return objective.objective(
        {**params, "model": model_params},
        variables["batch_stats"],
        batch,
        task_weights=task_weights,
        **kwargs,
    )[0]

  np.testing.assert_allclose(
      float(got["grad_norm/total"]), _norm(jax.grad(total)(params["model"])), rtol=2e-4
  )
  supervised = lambda p: sum(
      used[t] * s / 2 for t, s in enumerate(partial_label_terms(apply(p)[0], batch, tasks)[0])
  )
  g_sup = jax.grad(supervised)(params["model"])
  np.testing.assert_allclose(float(got["grad_norm/supervised"]), _norm(g_sup), rtol=2e-4)
  if regularized:
    g_reg = jax.grad(lambda p: total(p) - supervised(p))(params["model"])
    np.testing.assert_allclose(float(got["grad_norm/pixel_contrast"]), _norm(g_reg), rtol=2e-3)
    flat = lambda g: np.concatenate(
        [np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(g)]
    )
    cos = flat(g_sup) @ flat(g_reg) / (_norm(g_sup) * _norm(g_reg))
    assert abs(cos) > 0.05  # A cosine far from 0, so the check below can fail.
    np.testing.assert_allclose(float(got["grad_cos/pixel_contrast"]), cos, atol=2e-3)
  else:
    assert set(got) == {
        "grad_norm/semseg",
        "grad_norm/depth",
        "grad_norm/normal",
        "grad_norm/supervised",
        "grad_norm/total",
    }
