"""Task weightings (mtjax.weighting) against independent float64 NumPy implementations of the
equations, on synthetic per-step loss sequences."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtjax import weighting
from tools.bench import synthetic_batch

T, STEPS = 3, 4  # Tasks, steps per epoch.


def _sequence(epochs, seed=0, drop=None):
  """Per-step losses ℓ [E·S, T] (decaying at task-specific rates, noisy) and label counts n."""
  rng = np.random.default_rng(seed)
  steps = np.arange(epochs * STEPS)
  rates = np.array([0.02, 0.08, 0.15])
  losses = 2.0 * np.exp(-rates * steps[:, None]) * rng.uniform(0.8, 1.2, (steps.size, T))
  counts = rng.integers(1, 5, (steps.size, T)).astype(np.float64)
  if drop is not None:  # (epoch, task): no labelled example of the task in that epoch.
    e, t = drop
    counts[e * STEPS : (e + 1) * STEPS, t] = 0
  return losses, counts


def _epoch_means(losses, counts, log_scale):
  """float64 [E, T] epoch means of f(ℓ) weighted by n; a task without labels keeps the last mean
  (NaN before it has one)."""
  f = np.log(losses + 1 + 1e-6) if log_scale else losses
  out, last = [], np.full(T, np.nan)
  for e in range(len(losses) // STEPS):
    sl = slice(e * STEPS, (e + 1) * STEPS)
    n = counts[sl].sum(0)
    mean = np.where(n > 0, (counts[sl] * f[sl]).sum(0) / np.maximum(n, 1), last)
    out.append(mean)
    last = mean
  return np.array(out)


def _lps_reference(means, spread, k, min_weight, normalize, as_released):
  """Weights in force during each epoch 0..E (float64 [E + 1, T]); METHODS.md §2 by hand."""
  weights = [np.ones(T)]
  for e in range(len(means)):
    w = weights[-1]
    if as_released and e == 0:
      w = means[0].sum() / means[0]
    elif e >= k and np.isfinite(means[e]).all() and np.isfinite(means[e - k]).all():
      ratio = (means[e] / means[e - k]) / (means[e].sum() / means[e - k].sum())
      mu = ratio.mean()
      w = mu + spread * (ratio - mu)
      if not as_released:
        if min_weight is not None:
          w = np.maximum(w, min_weight)
        if normalize:
          w = T * w / w.sum()
    weights.append(w)
  return np.array(weights)


def _run(transform, losses, counts):
  """The weights in force during each epoch (float32 [E + 1, T]), by running the transform."""
  params = {"w": jnp.zeros(2)}
  state = transform.init(params)
  update = jax.jit(transform.update)
  out = [np.asarray(weighting.current_weights(state))]
  for i in range(len(losses)):
    grads = {"w": jnp.full(2, 0.5)}
    new_grads, state = update(
        grads, state, params, task_losses=jnp.asarray(losses[i]), task_counts=jnp.asarray(counts[i])
    )
    np.testing.assert_array_equal(new_grads["w"], grads["w"])  # Gradients pass unchanged.
    if (i + 1) % STEPS == 0:
      out.append(np.asarray(weighting.current_weights(state)))
  return np.array(out)


@pytest.mark.parametrize(
    "k,spread,min_weight,normalize,log_scale",
    [
        (1, 1.0, None, False, True),
        (1, 2.5, 0.05, True, True),
        (1, 7.5, None, False, True),
        (1, 7.5, 0.05, True, True),
        (3, 2.5, None, True, True),
        (3, 7.5, 0.05, False, True),
        (2, 7.5, 0.05, True, False),  # lps_no_log
    ],
)
def test_lps_matches_the_numpy_reference(k, spread, min_weight, normalize, log_scale):
  losses, counts = _sequence(epochs=7)
  transform = weighting.loss_prioritization(
      T,
      spread=spread,
      history=k,
      steps_per_epoch=STEPS,
      log_scale=log_scale,
      min_weight=min_weight,
      normalize=normalize,
  )
  got = _run(transform, losses, counts)
  expected = _lps_reference(
      _epoch_means(losses, counts, log_scale), spread, k, min_weight, normalize, False
  )
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
  np.testing.assert_array_equal(got[: k + 1], 1.0)  # Before K + 1 epochs of history: w = 1.
  assert not np.allclose(got[k + 1], 1.0)  # ... and then they move.
  if normalize:
    np.testing.assert_allclose(got.sum(1), T, rtol=1e-5)
  if min_weight is not None and not normalize:
    assert got.min() >= min_weight - 1e-7
  elif min_weight is not None:
    assert got.min() > 0


def test_lps_as_released_reproduces_the_released_rule_and_can_go_negative():
  losses, counts = _sequence(epochs=6, seed=3)
  transform = weighting.loss_prioritization(
      T,
      spread=7.5,
      history=1,
      steps_per_epoch=STEPS,
      log_scale=None,
      min_weight=None,
      normalize=None,
      as_released=True,
  )
  got = _run(transform, losses, counts)
  means = _epoch_means(losses, counts, log_scale=False)  # Raw losses.
  expected = _lps_reference(means, 7.5, 1, None, False, True)
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(got[1], means[0].sum() / means[0], rtol=1e-5)  # Epoch-0 rule.
  assert (got < 0).any()  # β = 7.5 without clipping: a weight goes negative, as released.
  with pytest.raises(ValueError, match="as_released=True is the released rule"):
    weighting.loss_prioritization(
        T,
        spread=7.5,
        history=2,
        steps_per_epoch=STEPS,
        as_released=True,
        min_weight=None,
        normalize=None,
    )


def test_a_task_without_labels_in_an_epoch_keeps_its_previous_mean():
  losses, counts = _sequence(epochs=6, seed=1, drop=(3, 1))
  transform = weighting.loss_prioritization(
      T, spread=2.5, history=1, steps_per_epoch=STEPS, min_weight=None, normalize=False
  )
  got = _run(transform, losses, counts)
  means = _epoch_means(losses, counts, log_scale=True)
  np.testing.assert_array_equal(means[3, 1], means[2, 1])
  np.testing.assert_allclose(got, _lps_reference(means, 2.5, 1, None, False, False), rtol=2e-5)
  # Task 1 unlabelled in the first epoch: no mean yet, so the weights wait for one.
  losses, counts = _sequence(epochs=4, seed=1, drop=(0, 1))
  got = _run(transform, losses, counts)
  np.testing.assert_array_equal(got[:3], 1.0)
  assert np.isfinite(got).all() and not np.allclose(got[3], 1.0)


def test_dwa_matches_its_formula():
  losses, counts = _sequence(epochs=5, seed=2)
  got = _run(weighting.dynamic_weight_average(T, steps_per_epoch=STEPS), losses, counts)
  means = _epoch_means(losses, counts, log_scale=False)
  np.testing.assert_array_equal(got[:2], 1.0)  # The first two epochs.
  for e in range(2, len(got)):
    r = means[e - 1] / means[e - 2]
    expected = T * np.exp(r / 2.0) / np.exp(r / 2.0).sum()
    np.testing.assert_allclose(got[e], expected, rtol=1e-5)


def test_uncertainty_loss_and_weights_follow_kendall():
  config = _config("uncertainty")
  w = weighting.create(config, T, STEPS)
  params = {"log_var": jnp.array([0.0, 0.5, -1.0])}
  sums, counts = jnp.array([2.0, 3.0, 0.0]), jnp.array([2.0, 1.0, 0.0])
  loss, means, used = w.combine(sums, counts, 4, params, jnp.ones(T))
  s = np.array([0.0, 0.5, -1.0])
  terms = np.array([2.0, 3.0, 0.0]) / 4  # (n_t / B) ℓ_t = Σ m L / B
  np.testing.assert_allclose(loss, np.sum(0.5 * np.exp(-s) * terms + 0.5 * s), rtol=1e-6)
  np.testing.assert_allclose(used, 0.5 * np.exp(-s), rtol=1e-6)
  np.testing.assert_allclose(means, [1.0, 3.0, 0.0])
  # The gradient in s_t is ½ − ½ e^{−s_t} term_t: the optimum is σ_t² = term_t.
  grad = jax.grad(lambda p: w.combine(sums, counts, 4, p, jnp.ones(T))[0])(params)["log_var"]
  np.testing.assert_allclose(grad, 0.5 - 0.5 * np.exp(-s) * terms, rtol=1e-6)
  # The transform reports the weights of the updated params.
  tree = {"model": {"k": jnp.zeros(2)}, "weighting": params}
  state = w.transform.init(tree)
  updates = jax.tree.map(lambda x: jnp.full_like(x, 0.1), tree)
  _, state = w.transform.update(updates, state, tree, task_losses=jnp.ones(T))
  np.testing.assert_allclose(weighting.current_weights(state), 0.5 * np.exp(-(s + 0.1)), rtol=1e-6)


def test_combine_is_mtpsl_loss_with_equal_weights_and_logs_with_log_smoothing():
  sums, counts = jnp.array([2.0, 3.0, 0.0]), jnp.array([2.0, 1.0, 0.0])
  equal = weighting.create(_config("equal"), T, STEPS)
  loss, _, used = equal.combine(sums, counts, 4, {}, jnp.ones(T))
  np.testing.assert_allclose(loss, (2.0 + 3.0) / 4, rtol=1e-6)
  np.testing.assert_array_equal(used, 1.0)
  smooth = weighting.create(_config("log_smoothing"), T, STEPS)
  loss, _, _ = smooth.combine(sums, counts, 4, {}, jnp.ones(T))
  # ℓ = (1, 3, 0): (n_t / B) log(ℓ_t + 1 + η).
  np.testing.assert_allclose(
      loss, 2 / 4 * np.log(1 + 1 + 1e-6) + 1 / 4 * np.log(3 + 1 + 1e-6), rtol=1e-6
  )
  lps = weighting.create(_config("lps"), T, STEPS)
  loss, _, _ = lps.combine(sums, counts, 4, {}, jnp.array([2.0, 0.5, 1.0]))
  np.testing.assert_allclose(
      loss, 2.0 * 2 / 4 * np.log(1 + 1 + 1e-6) + 0.5 * 1 / 4 * np.log(3 + 1 + 1e-6), rtol=1e-6
  )
  # The current weights are constants of the step: no gradient flows into them.
  g = jax.grad(lambda w: lps.combine(sums, counts, 4, {}, w)[0])(jnp.ones(T))
  np.testing.assert_array_equal(g, 0.0)


def test_weights_computed_but_not_applied_as_mt_cps_released_loop():
  """apply_weights=False: the loss is the unweighted one (the released loop overwrites its
  weighted total), the computed weights are still returned for logging, and the transform still
  computes them (the same state as with the weights applied)."""
  sums, counts = jnp.array([2.0, 3.0, 0.0]), jnp.array([2.0, 1.0, 0.0])
  weights = jnp.array([2.0, 0.5, 1.0])
  applied = weighting.create(_config("lps"), T, STEPS)
  released = weighting.create(_config("lps", apply_weights=False), T, STEPS)
  loss, _, used = released.combine(sums, counts, 4, {}, weights)
  unweighted, _, _ = applied.combine(sums, counts, 4, {}, jnp.ones(T))
  np.testing.assert_allclose(loss, unweighted, rtol=1e-7)
  assert not np.allclose(loss, applied.combine(sums, counts, 4, {}, weights)[0])
  np.testing.assert_array_equal(used, weights)
  tree = {"model": {"k": jnp.zeros(2)}, "weighting": {}}
  states = [w.transform.init(tree) for w in (applied, released)]
  rng = np.random.default_rng(0)
  for _ in range(3 * STEPS):
    losses = jnp.asarray(rng.uniform(0.5, 2.0, T), jnp.float32)
    states = [
        w.transform.update(tree, s, tree, task_losses=losses, task_counts=jnp.ones(T))[1]
        for w, s in zip((applied, released), states)
    ]
  np.testing.assert_array_equal(*(weighting.current_weights(s) for s in states))
  assert not np.allclose(weighting.current_weights(states[1]), 1.0)


def test_fixed_weights_enter_the_loss_and_never_change():
  w = weighting.create(_config("fixed", fixed_weights=(1.0, 0.5, 4.0)), T, STEPS)
  tree = {"model": {"k": jnp.zeros(2)}, "weighting": {}}
  state = w.transform.init(tree)
  for _ in range(3 * STEPS):  # Across epoch ends.
    _, state = w.transform.update(tree, state, tree, task_losses=jnp.array([3.0, 1.0, 0.1]))
  np.testing.assert_array_equal(weighting.current_weights(state), [1.0, 0.5, 4.0])
  sums, counts = jnp.array([2.0, 3.0, 1.0]), jnp.array([2.0, 1.0, 1.0])
  loss, _, used = w.combine(sums, counts, 4, {}, weighting.current_weights(state))
  np.testing.assert_allclose(loss, (1.0 * 2.0 + 0.5 * 3.0 + 4.0 * 1.0) / 4, rtol=1e-6)
  np.testing.assert_array_equal(used, [1.0, 0.5, 4.0])
  with pytest.raises(ValueError, match="expected 3 weights, one per task"):
    weighting.create(_config("fixed", fixed_weights=(1.0, 2.0)), T, STEPS)
  with pytest.raises(ValueError, match="finite and >= 0"):
    weighting.create(_config("fixed", fixed_weights=(1.0, -1.0, 1.0)), T, STEPS)


def test_weighting_state_lives_in_a_chained_optimizer_state():
  tx = optax.chain(optax.adam(1e-3), weighting.dynamic_weight_average(T, steps_per_epoch=1))
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  for losses in ([1.0, 1.0, 1.0], [0.5, 1.0, 0.9], [0.25, 1.0, 0.9]):
    _, state = tx.update(params, state, params, task_losses=jnp.array(losses))
  r = np.array([0.5, 1.0, 1.0])
  np.testing.assert_allclose(
      weighting.current_weights(state), 3 * np.exp(r / 2) / np.exp(r / 2).sum(), rtol=1e-6
  )
  with pytest.raises(KeyError, match="no task weighting"):
    weighting.current_weights(optax.adam(1e-3).init(params))
  with pytest.raises(ValueError, match=r"task_losses must have shape \(3,\)"):
    tx.update(params, state, params, task_losses=jnp.ones(2))


def _config(name, **overrides):
  from configs import default

  config = default.get_config()
  config.weighting.name = name
  for key, value in overrides.items():
    config.weighting[key] = value
  return config


def test_create_rejects_bad_options():
  with pytest.raises(ValueError, match="config.weighting.name must be one of"):
    weighting.create(_config("gradnorm"), T, STEPS)
  with pytest.raises(ValueError, match="as_released applies to 'lps' only"):
    weighting.create(_config("dwa", as_released=True), T, STEPS)
  with pytest.raises(ValueError, match="history K must be >= 1"):
    weighting.create(_config("lps", history=0), T, STEPS)
  names = [weighting.create(_config(n), T, STEPS).log_scale for n in weighting.NAMES]
  assert dict(zip(weighting.NAMES, names)) == {
      "equal": False,
      "fixed": False,
      "uncertainty": False,
      "dwa": False,
      "log_smoothing": True,
      "lps_no_log": False,
      "lps": True,
  }


# --------------------------------------------------------------------------------------------
# In the train step
# --------------------------------------------------------------------------------------------


def _weighting_leaves(state):
  opt_state = jax.device_get(state.opt_state)
  return np.asarray(weighting.current_weights(opt_state)), [
      np.asarray(x) for x in jax.tree.leaves(opt_state[-1])
  ]


@pytest.mark.slow
def test_lps_in_training_logs_weights_and_resumes_mid_epoch_exactly(data_dir, tmp_path):
  from mtjax import train
  from tests.test_main import read_scalars
  from tests.test_train import tiny_config

  # 5 train examples, batch 2: 2 steps per epoch (drop_last); K = 1, so the weights move at the
  # end of step 4 (epoch 1), and again at the end of step 6.
  def config(steps):
    c = tiny_config(data_dir, num_train_steps=steps, checkpoint_every_steps=4, eval_every_steps=4)
    c.label_setting = "full"
    c.weighting.name = "lps"
    c.weighting.spread = 2.5
    return c

  straight = train.train_and_evaluate(config(7), str(tmp_path / "straight"))
  scalars = read_scalars(str(tmp_path / "straight"))
  for task in ("semseg", "depth", "normal"):
    tag = f"train/weight/{task}"
    assert [scalars[tag][s] for s in range(1, 5)] == [1.0] * 4, tag
    assert scalars[tag][5] != 1.0 and scalars[tag][7] != scalars[tag][5], tag
  weights, leaves = _weighting_leaves(straight)
  np.testing.assert_allclose(weights.sum(), 3.0, rtol=1e-5)
  np.testing.assert_allclose(
      weights, [scalars[f"train/weight/{t}"][7] for t in ("semseg", "depth", "normal")], rtol=1e-6
  )

  interrupted = tmp_path / "interrupted"
  train.train_and_evaluate(config(3), str(interrupted))  # Stops at step 3, mid-epoch.
  resumed = train.train_and_evaluate(config(7), str(interrupted))
  assert int(resumed.step) == 7
  weights_resumed, leaves_resumed = _weighting_leaves(resumed)
  np.testing.assert_array_equal(weights_resumed, weights)
  for a, b in zip(leaves, leaves_resumed):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("head_weight", [None, 0.5])
def test_deep_supervision_heads_share_the_weights(head_weight):
  import flax.linen as nn

  from mtjax import objective, tasks

  class TwoHeads(nn.Module):
    """Depth only: a final and an intermediate prediction, with a BatchNorm to be a SegNet-like
    module (the objective updates batch_stats); the intermediate head's "weight" if given."""

    @nn.compact
    def __call__(self, x, train):
      h = nn.BatchNorm(use_running_average=not train)(x)[..., :1]
      final = {"depth": nn.Dense(1)(h)}
      deep = {"depth": 2.0 * final["depth"]}
      if head_weight is not None:
        deep["weight"] = head_weight
      return {**final, objective.DEEP_SUPERVISION: (deep,)}

  model = TwoHeads()
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  batch = {
      "image": x,
      "depth": jax.random.uniform(jax.random.key(2), (2, 4, 4, 1)) + 1.0,
      "label_mask": jnp.ones((2, 1)),
  }
  config = _config("lps")
  config.tasks = ("depth",)
  w = weighting.create(config, 1, STEPS)
  params = {"model": variables["params"], "regularizer": {}, "weighting": {}}
  loss, (logs, _, (means, counts), _) = objective.objective(
      params,
      variables["batch_stats"],
      batch,
      model=model,
      tasks=tasks.get_tasks(("depth",)),
      regularizer=None,
      rng=jax.random.key(3),
      task_weighting=w,
      task_weights=jnp.array([0.7]),
  )
  preds, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  per_example = [
      np.asarray(tasks.depth_loss(head["depth"], batch["depth"]))
      for head in (preds, preds[objective.DEEP_SUPERVISION][0])
  ]
  factors = (1.0, 1.0 if head_weight is None else head_weight)
  expected = sum(  # n/B = 1; the head's factor multiplies its projected term.
      v * 0.7 * np.log(l.mean() + 1 + 1e-6) for v, l in zip(factors, per_example)
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(means, [per_example[0].mean()], rtol=1e-5)
  np.testing.assert_allclose(logs["weight/depth"], 0.7)
  np.testing.assert_array_equal(counts, [2.0])


@pytest.mark.slow
def test_uncertainty_log_variances_train_and_are_checkpointed(data_dir, tmp_path):
  from mtjax import checkpoint, train
  from tests.test_main import read_scalars
  from tests.test_train import tiny_config

  config = tiny_config(data_dir, num_train_steps=3, checkpoint_every_steps=3, eval_every_steps=3)
  config.weighting.name = "uncertainty"
  state = train.train_and_evaluate(config, str(tmp_path / "run"))
  log_var = np.asarray(state.weighting_params["log_var"])
  assert log_var.shape == (3,) and (log_var != 0).all()  # s_t trains (Adam moves every entry).
  np.testing.assert_allclose(
      weighting.current_weights(state.opt_state), 0.5 * np.exp(-log_var), rtol=1e-6
  )
  scalars = read_scalars(str(tmp_path / "run"))
  assert scalars["train/weight/depth"][1] == 0.5  # ½ e^0 at the first step.
  assert scalars["train/weight/depth"][3] != 0.5
  restored = checkpoint.restore_latest(
      checkpoint.create_manager(str(tmp_path / "run"), keep=1), state
  )
  np.testing.assert_array_equal(restored.weighting_params["log_var"], log_var)


def test_method_configs():
  from configs import demo_lps, nyud_lps
  from configs.experiments import demo_weighting

  assert nyud_lps.get_config().weighting.spread == 7.5  # The released NYUD config.
  assert demo_lps.get_config().weighting.name == "lps"
  grid = demo_weighting.get_grid()
  # MT-CP Table 4's rows: every weighting but 'fixed', whose weights are hand-set per experiment.
  table4 = set(weighting.NAMES) - {"fixed"}
  assert grid["baseline"] == "equal" and set(grid["configs"]) == table4
  for name, config in grid["configs"].items():
    assert config.weighting.name == name
    assert weighting.create(config, 3, 125).name == name


_SHARDED_SCRIPT = r"""
import jax, numpy as np
from jax.sharding import Mesh
from configs import default
from mtjax import optimizer, sharding, train, weighting
from mtjax.models import registry
from tests.test_weighting import sharded_batch

config = default.get_config()
config.model.filters = (8, 8, 16, 16, 16)
config.batch_size = 8
config.weighting.name = "lps"
model = registry.create_model(config)
w = weighting.create(config, len(config.tasks), steps_per_epoch=1)  # An epoch per step: the weights move at 2.
tx = optimizer.create_optimizer(config, 1, None, w)
batch = sharded_batch()
out = []
for devices in (jax.devices()[:1], jax.devices()):
  mesh = Mesh(np.array(devices), (sharding.DATA_AXIS,))
  state = train.create_train_state(model, tx, jax.random.key(0), (32, 64), mesh, None, w)
  step = train.make_train_step(config, model, tx, mesh, None, w)
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(mesh, batch))
  out.append(jax.device_get(state.opt_state[-1]))
one, eight = out
assert not np.allclose(one.task_weights, 1.0), one.task_weights
np.testing.assert_array_equal(one.counts, eight.counts)
# Step 2's losses follow one update (round-off in step 1 moves them by ~1e-4; test_sharding.py).
np.testing.assert_allclose(eight.history, one.history, rtol=2e-3)
np.testing.assert_allclose(eight.task_weights, one.task_weights, rtol=2e-3)
print("OK", one.task_weights)
"""


def sharded_batch():
  """tools.bench's full batch of 8 at 32x64 with a random 60 % of the labels kept per task."""
  batch = synthetic_batch(8, 32, 64, 3)
  batch["label_mask"] = (np.random.default_rng(1).random((8, 3)) < 0.6).astype(np.float32)
  return batch


@pytest.mark.slow
def test_lps_state_is_the_same_on_one_and_eight_devices():
  from tests.test_sharding import run_on_eight_cpu_devices

  run_on_eight_cpu_devices(_SHARDED_SCRIPT)


# --------------------------------------------------------------------------------------------
# A weighting of one's own: a builder, and no branch anywhere else
# --------------------------------------------------------------------------------------------


def _toy_rule(terms, params, weights):
  """A toy combine rule: L = Σ_t (g_t w_t term_t)², with learnable gains g_t."""
  used = params["gain"] * weights
  return jnp.sum((used * terms) ** 2), used


def _build_toy(options, num_tasks, steps_per_epoch):
  del steps_per_epoch
  return weighting.Weighting(
      options.name,
      weighting.constant((0.5,) * num_tasks),
      False,
      num_tasks,
      combine_fn=_toy_rule,
      init_params_fn=lambda t: {"gain": jnp.full((t,), 3.0, jnp.float32)},
  )


def test_a_registered_weighting_brings_its_own_combine_rule_and_params(monkeypatch):
  import flax.linen as nn

  from mtjax import objective, tasks

  monkeypatch.setitem(weighting.BUILDERS, "toy", _build_toy)
  w = weighting.create(_config("toy"), T, STEPS)
  assert w.name == "toy" and w.combine_fn is _toy_rule
  params = w.init_params()
  np.testing.assert_array_equal(params["gain"], [3.0, 3.0, 3.0])
  weights = weighting.current_weights(w.transform.init({}))
  sums, counts = jnp.array([2.0, 3.0, 0.0]), jnp.array([2.0, 1.0, 0.0])
  loss, means, used = w.combine(sums, counts, 4, params, weights)
  terms = np.array([2.0, 3.0, 0.0]) / 4
  np.testing.assert_allclose(loss, np.sum((1.5 * terms) ** 2), rtol=1e-6)
  np.testing.assert_allclose(used, 1.5)
  np.testing.assert_allclose(means, [1.0, 3.0, 0.0])

  # The objective applies the rule and trains its params, with no branch on the name.
  class Depth(nn.Module):

    @nn.compact
    def __call__(self, x, train):
      h = nn.BatchNorm(use_running_average=not train)(x)
      return {"depth": nn.Dense(1)(h)}

  model = Depth()
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  batch = {
      "image": x,
      "depth": jax.random.uniform(jax.random.key(2), (2, 4, 4, 1)) + 1.0,
      "label_mask": jnp.ones((2, 1)),
  }
  config = _config("toy")
  config.tasks = ("depth",)
  w = weighting.create(config, 1, STEPS)

  def run(weighting_params):
    params = {"model": variables["params"], "regularizer": {}, "weighting": weighting_params}
    return objective.objective(
        params,
        variables["batch_stats"],
        batch,
        model=model,
        tasks=tasks.get_tasks(("depth",)),
        regularizer=None,
        rng=jax.random.key(3),
        task_weighting=w,
        task_weights=jnp.array([0.5]),
    )

  loss, (logs, _, _, _) = run(w.init_params())
  preds, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  term = float(np.mean(np.asarray(tasks.depth_loss(preds["depth"], batch["depth"]))))  # n/B = 1.
  np.testing.assert_allclose(loss, (3.0 * 0.5 * term) ** 2, rtol=1e-5)
  np.testing.assert_allclose(logs["weight/depth"], 1.5)
  grad = jax.grad(lambda p: run(p)[0])(w.init_params())["gain"]
  np.testing.assert_allclose(grad, [2 * 3.0 * (0.5 * term) ** 2], rtol=1e-5)
