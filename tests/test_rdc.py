"""Region-aware distribution contrast: the FiLM mapping network, pair selection, the InfoNCE over
region distances, the train-state integration and the command line."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mtjax import optimizer, regularizers, train
from mtjax.ops import gaussian
from mtjax.regularizers import mapping, rdc
from tests.data_fixtures import SHARED_DATA
from tests.test_main import TINY, read_scalars, run_main
from tests.test_sharding import run_on_eight_cpu_devices
from tests.test_train import tiny_config

TASKS = ("semseg", "depth", "normal")


def _settings(**kw):
  base = dict(tasks=TASKS, num_classes=4, max_pairs=6, num_regions=4, filters=(8, 8))
  return rdc.RDCSettings(**{**base, **kw})


# ---- InfoNCE ------------------------------------------------------------------------------------


def test_info_nce_three_regions_by_hand():
  # Squared distances between 3 prediction regions (rows) and 3 ground-truth regions (columns).
  w = np.array([[1.0, 4.0, 9.0], [2.0, 0.5, 3.0], [6.0, 1.0, 2.0]])
  tau = 2.0
  sim = np.exp(-w / tau)
  expected = sum(-np.log(sim[i, i] / sim[i].sum()) for i in range(3))
  valid = jnp.ones(3, bool)
  total, count = rdc.info_nce(jnp.asarray(-w / tau), valid[None] & valid[:, None], valid)
  np.testing.assert_allclose(total, expected, rtol=1e-6)
  assert count == 3

  # Region 2 invalid: it is neither an anchor nor a negative of the others.
  valid = jnp.array([True, True, False])
  total, count = rdc.info_nce(jnp.asarray(-w / tau), valid[None] & valid[:, None], valid)
  expected = -np.log(sim[0, 0] / sim[0, :2].sum()) - np.log(sim[1, 1] / sim[1, :2].sum())
  np.testing.assert_allclose(total, expected, rtol=1e-6)
  assert count == 2

  # A single valid region has no negative: nothing counts, and the gradient is exactly 0.
  valid = jnp.array([True, False, False])
  f = lambda x: rdc.info_nce(x, valid[None] & valid[:, None], valid)[0]
  assert f(jnp.asarray(w)) == 0 and rdc.info_nce(jnp.asarray(w), valid, valid)[1] == 0
  assert not np.any(jax.grad(f)(jnp.asarray(w)))


def test_contrast_loss_gaussian_w2_matches_numpy_reference():
  rng = np.random.default_rng(0)
  f_pred = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
  f_gt = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
  ids = np.repeat(np.array([0, 0, 1, 1, 2, 2]), 4).reshape(6, 4).T[None].copy()
  ids[0, 0, 0] = -1
  s = _settings(num_regions=3, temperature=3.0, eps=1e-3)
  total, count = rdc.contrast_loss(
      jnp.asarray(f_pred), jnp.asarray(f_gt), jnp.asarray(ids), jnp.array([True]), s
  )

  def gaussian64(f, r):
    x = f[0][ids[0] == r].astype(np.float64)
    return x.mean(0), np.cov(x.T, bias=True) + 1e-3 * np.eye(3)

  from scipy.linalg import sqrtm

  def w2(a, b):
    (ma, ca), (mb, cb) = a, b
    root = sqrtm(ca).real
    return np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2 * sqrtm(root @ cb @ root).real)

  p = [gaussian64(f_pred, r) for r in range(3)]
  g = [gaussian64(f_gt, r) for r in range(3)]
  logits = np.array([[-w2(p[i], g[j]) / 3.0 for j in range(3)] for i in range(3)])
  expected = sum(np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(3))
  np.testing.assert_allclose(total, expected, rtol=2e-4)
  assert count == 3


def test_pairwise_kl_matches_broadcast_kl_divergence():
  rng = np.random.default_rng(1)
  for cov_kind in ("full", "diag"):
    feats = jnp.asarray(rng.normal(size=(2, 40, 3)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, 4, size=(2, 40)), jnp.int32)
    means, covs, _ = gaussian.region_gaussians(
        feats, ids, 4, covariance=cov_kind, eps=0.05, spatial_dims=1
    )
    pairwise = gaussian.pairwise_kl_divergence(means[0], covs[0], means[1], covs[1])
    expand = lambda x, axis: jnp.expand_dims(x, axis)
    broadcast = gaussian.kl_divergence(
        expand(means[0], 1), expand(covs[0], 1), expand(means[1], 0), expand(covs[1], 0)
    )
    assert pairwise.shape == (4, 4)
    np.testing.assert_allclose(pairwise, broadcast, rtol=1e-4, atol=1e-4)


# ---- Pairs and FiLM rows ---------------------------------------------------------------------------


def _pairs(mask):
  pred, gt = mapping.all_pairs(3)
  valid = np.asarray(mapping.pair_validity(jnp.asarray(mask)))
  return [sorted((int(gt[p]), int(pred[p])) for p in np.flatnonzero(v)) for v in valid]


def test_pair_validity_onelabel_randomlabels_and_full():
  # (labelled s, unlabelled t) pairs as (s, t).
  onelabel = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
  assert _pairs(onelabel) == [[(0, 1), (0, 2)], [(2, 0), (2, 1)]]
  random = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], np.float32)
  assert _pairs(random) == [[(0, 2), (1, 2)], [(1, 0), (1, 2)], []]
  full = np.ones((1, 3), np.float32)
  assert _pairs(full) == [[(s, t) for s in range(3) for t in range(3) if s != t]]
  assert mapping.max_directed_pairs(onelabel) == 2
  assert mapping.max_directed_pairs(np.concatenate([random, full])) == 6

  pred, gt, valid = mapping.pair_slots(jnp.asarray(random), 2)
  assert np.asarray(valid).tolist() == [[True, True], [True, True], [False, False]]
  assert [sorted(zip(g, p)) for g, p in zip(np.asarray(gt)[:2], np.asarray(pred)[:2])] == [
      [(0, 2), (1, 2)],
      [(1, 0), (1, 2)],
  ]
  with pytest.raises(ValueError, match="num_slots=7"):
    mapping.pair_slots(jnp.asarray(random), 7)


def test_pair_row_is_mtpsl_taskpair_order():
  for t in (2, 3, 5):
    for pred in range(t):
      for gt in range(t):
        if pred == gt:
          continue
        # MTPSL: A[source=pred, target=gt] = 1, then the off-diagonal entries, row-major.
        a = np.zeros((t, t))
        a[pred, gt] = 1
        flat = a.flatten()[:-1].reshape(t - 1, t + 1)[:, 1:].flatten()
        assert mapping.pair_row(pred, gt, t) == int(np.argmax(flat))
  pred, gt = mapping.all_pairs(3)
  assert mapping.pair_row(pred, gt, 3).tolist() == list(range(6))


def test_film_rows_select_the_directed_pair():
  enc = mapping.FiLMEncoder(input_channels=(4, 1), filters=(4,), convs_per_stage=(1,))
  params = enc.init_variables(jax.random.key(0), (8, 8))["params"]
  assert params["stage_0_conv_0"]["gamma"].shape == (2, 4)  # T(T-1) = 2 directed pairs.
  # Row 1 switched off (γ = 0, β = -1 -> ReLU gives 0); row 0 untouched.
  film = dict(params["stage_0_conv_0"])
  film["gamma"] = film["gamma"].at[1].set(0.0)
  film["beta"] = film["beta"].at[1].set(-1.0)
  params = {**params, "stage_0_conv_0": film}
  h = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
  out = enc.apply({"params": params}, h, jnp.array([0, 1]))
  assert out.shape == (2, 4, 4, 4)
  assert np.all(np.asarray(out[1]) == 0) and np.any(np.asarray(out[0]) > 0)
  # Row 0 of the pair alone gives the same map as in the mixed batch (per-map normalisation).
  alone = enc.apply({"params": params}, h[:1], jnp.array([0]))
  np.testing.assert_allclose(alone[0], out[0], rtol=1e-5, atol=1e-6)


def test_mtpsl_mapping_parameter_count():
  enc = mapping.FiLMEncoder(input_channels=(13, 1, 3))
  shapes = jax.eval_shape(lambda r: enc.init_variables(r, (64, 64)), jax.random.key(0))
  assert sum(x.size for x in jax.tree.leaves(shapes)) == 14_819_328


# ---- Encodings ------------------------------------------------------------------------------------


def test_straight_through_one_hot_passes_gradients_to_semseg():
  logits = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (1, 2, 2, 5)))
  for gumbel in (False, True):
    out = mapping.encode_prediction("semseg", logits, jax.random.key(1), gumbel=gumbel)
    assert set(np.unique(np.asarray(out))) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(out).sum(-1), 1.0)
    weights = jnp.arange(5.0)
    grad = jax.grad(
        lambda x: jnp.sum(
            mapping.encode_prediction("semseg", x, jax.random.key(1), gumbel=gumbel) * weights
        )
    )(logits)
    assert np.all(np.isfinite(grad)) and np.abs(np.asarray(grad)).sum() > 0
  # Without Gumbel noise the forward is the argmax.
  hard = mapping.encode_prediction("semseg", logits, None, gumbel=False)
  np.testing.assert_array_equal(np.argmax(hard, -1), np.argmax(logits, -1))
  with pytest.raises(ValueError, match="needs an rng"):
    mapping.encode_prediction("semseg", logits, None, gumbel=True)


def test_ground_truth_encodings():
  seg = jnp.array([[[0, -1], [2, 1]]])
  one_hot = mapping.encode_ground_truth("semseg", seg, 3)
  np.testing.assert_array_equal(one_hot[0, 0, 1], 0.0)  # Ignore -> all-zero.
  np.testing.assert_array_equal(one_hot[0, 1, 0], [0, 0, 1])
  depth = jnp.array([[[[1.0], [0.0]], [[4.0], [2.0]]]])
  np.testing.assert_allclose(mapping.encode_ground_truth("depth", depth, 3)[0, 1, 0, 0], 1.0)
  normal = jnp.zeros((1, 1, 1, 3)).at[..., 2].set(-1.0)
  np.testing.assert_allclose(
      mapping.encode_ground_truth("normal", normal, 3)[0, 0, 0], [0.5, 0.5, 0]
  )


# ---- The loss on a batch ----------------------------------------------------------------------------


def _batch_and_predictions(key, b=2, h=16, w=16, c=4):
  k = jax.random.split(key, 6)
  batch = {
      "semseg": jax.random.randint(k[0], (b, h, w), -1, c),
      "depth": jax.random.uniform(k[1], (b, h, w, 1)),
      "normal": jax.random.normal(k[2], (b, h, w, 3)),
      "label_mask": jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])[:b],
      "regions": jax.random.randint(k[3], (b, h, w), -1, 4),
  }
  preds = {
      "semseg": jax.nn.log_softmax(jax.random.normal(k[4], (b, h, w, c))),
      "depth": jax.random.uniform(k[5], (b, h, w, 1)),
      "normal": batch["normal"] / jnp.linalg.norm(batch["normal"], axis=-1, keepdims=True),
  }
  return batch, preds


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"covariance": "diag"},
        {"distance": "kl", "temperature": 100.0},
        {"contrast": "vector"},
        {"contrast": "vector", "vector_similarity": "l2"},
        {"contrast": "pixel", "pixel_samples": 8},
        {"extraction": "patch", "patch_size": 8},
    ],
)
def test_rdc_loss_ablations_finite_with_gradients(overrides):
  s = _settings(max_pairs=2, **overrides)
  batch, preds = _batch_and_predictions(jax.random.key(0))
  params = s.encoder().init_variables(jax.random.key(1), (16, 16))["params"]
  (loss, logs), (g_params, g_preds) = jax.value_and_grad(
      lambda p, q: rdc.rdc_loss(p, s, q, batch, jax.random.key(2)), argnums=(0, 1), has_aux=True
  )(params, preds)
  assert np.isfinite(loss) and loss > 0
  assert logs["valid_pairs"] == 4  # onelabel example: 2 pairs; two labelled of three: 2 pairs.
  assert logs["valid_regions"] > 0
  for leaf in jax.tree.leaves((g_params, g_preds)):
    assert np.all(np.isfinite(leaf))
  # The unlabelled tasks' predictions get gradients (semseg through the straight-through one-hot).
  for name in ("semseg", "depth"):
    assert np.abs(np.asarray(g_preds[name])).sum() > 0, name


def test_degenerate_regions_give_finite_gradients():
  s = _settings(max_pairs=2, eps=1e-6)
  batch, preds = _batch_and_predictions(jax.random.key(3))
  # Constant predictions and ground truths (identical, rank-0 covariances), one-pixel regions,
  # empty region ids, and an example whose region map is all -1.
  preds = {k: jnp.zeros_like(v) for k, v in preds.items()}
  batch = {
      **batch,
      "depth": jnp.ones_like(batch["depth"]),
      "normal": jnp.zeros_like(batch["normal"]),
  }
  regions = jnp.full((2, 16, 16), -1, jnp.int32).at[0, :8].set(0).at[0, 9, 9].set(1)
  batch["regions"] = regions.at[0, 12:, :].set(2)
  params = s.encoder().init_variables(jax.random.key(1), (16, 16))["params"]
  grads = jax.grad(lambda p, q: rdc.rdc_loss(p, s, q, batch, jax.random.key(2))[0], argnums=(0, 1))(
      params, preds
  )
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))


def test_masked_regions_slots_and_examples_contribute_nothing():
  s = _settings(num_regions=3, temperature=2.0)
  rng = np.random.default_rng(0)
  f_pred = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  f_gt = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  ids = jnp.asarray(np.tile(np.array([0, 1, 2, -1]), (2, 4, 1)), jnp.int32)
  slot_valid = jnp.array([True, False])
  ref = rdc.contrast_loss(f_pred, f_gt, ids, slot_valid, s)
  # Changing the features of the invalid slot, or of pixels with no region, changes nothing.
  moved = rdc.contrast_loss(f_pred.at[1].add(5.0), f_gt.at[1].mul(-3.0), ids, slot_valid, s)
  np.testing.assert_allclose(moved, ref, rtol=1e-6)
  moved = rdc.contrast_loss(
      f_pred.at[:, :, 3].add(7.0), f_gt.at[:, :, 3].add(-2.0), ids, slot_valid, s
  )
  np.testing.assert_allclose(moved, ref, rtol=1e-6)
  assert ref[1] == 3  # Three regions of the one valid slot.
  # No valid slot at all: loss 0, count 0, finite.
  batch, preds = _batch_and_predictions(jax.random.key(0))
  batch["label_mask"] = jnp.zeros_like(batch["label_mask"])
  params = s.encoder().init_variables(jax.random.key(1), (16, 16))["params"]
  loss, logs = rdc.rdc_loss(params, s, preds, batch, jax.random.key(0))
  assert loss == 0 and logs["valid_pairs"] == 0 and logs["valid_regions"] == 0


# ---- Config, train state, command line ------------------------------------------------------------


def _rdc_config(data_dir, **overrides):
  config = tiny_config(data_dir, **overrides)
  config.regularizer.name = "rdc"
  config.regularizer.mapping.filters = (8, 8)
  config.regions.source = "semantic_gt"
  config.regions.loss_stride = 4
  config.regions.max_regions = 8
  config.regions.min_pixels = 1
  return config


def test_config_errors_name_the_key(data_dir):
  config = _rdc_config(data_dir)
  config.regions.loss_stride = 1
  with pytest.raises(ValueError, match="loss_stride=1 must equal a_θ's output stride 4"):
    regularizers.create(config, np.ones((5, 3)), 13, (32, 64))
  config = _rdc_config(data_dir)
  config.regions.source = "none"
  with pytest.raises(ValueError, match="needs regions"):
    regularizers.create(config, np.ones((5, 3)), 13, (32, 64))
  config = _rdc_config(data_dir)
  config.regularizer.contrast = "region"
  with pytest.raises(ValueError, match="config.regularizer.contrast='region'"):
    regularizers.create(config, np.ones((5, 3)), 13, (32, 64))
  config = _rdc_config(data_dir)
  config.regularizer.name = "rcd"
  with pytest.raises(ValueError, match="config.regularizer.name='rcd'"):
    regularizers.create(config, np.ones((5, 3)), 13, (32, 64))


def test_optimizer_groups_and_learning_rates(data_dir):
  config = _rdc_config(data_dir)
  reg = regularizers.create(config, np.ones((5, 3)), 13, (32, 64))
  params = reg.init(jax.random.key(0), (32, 64))
  groups = reg.param_groups(params)
  assert groups["stage_0_conv_0"]["gamma"] == "film"
  assert groups["stage_0_conv_0"]["conv"]["kernel"] == "mapping"
  assert reg.learning_rates == {"mapping": config.learning_rate, "film": 1e-3}
  # One Adam step from zero state moves each group by its own lr (Adam's first step is lr·sign).
  tx = optimizer.create_optimizer(config, 10, reg)
  tree = {"model": {"w": jnp.ones(3)}, "regularizer": params, "weighting": {}}
  grads = jax.tree.map(jnp.ones_like, tree)
  updates, _ = tx.update(grads, tx.init(tree), tree)
  np.testing.assert_allclose(updates["model"]["w"], -config.learning_rate, rtol=1e-4)
  np.testing.assert_allclose(updates["regularizer"]["stage_0_conv_0"]["gamma"], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(
      updates["regularizer"]["stage_0_conv_0"]["conv"]["kernel"], -config.learning_rate, rtol=1e-4
  )


def test_training_logs_rdc_and_resume_restores_a_theta_exactly(data_dir, tmp_path):
  straight = train.train_and_evaluate(_rdc_config(data_dir), str(tmp_path / "straight"))
  scalars = read_scalars(str(tmp_path / "straight"))
  for step in range(1, 5):
    for tag in ("train/loss/rdc", "train/rdc/valid_pairs", "train/rdc/valid_regions"):
      assert np.isfinite(scalars[tag][step]), tag
    assert scalars["train/rdc/valid_pairs"][step] > 0
  assert jax.tree.leaves(straight.reg_params)

  interrupted = tmp_path / "interrupted"
  half = train.train_and_evaluate(_rdc_config(data_dir, num_train_steps=2), str(interrupted))
  resumed = train.train_and_evaluate(_rdc_config(data_dir), str(interrupted))
  assert int(resumed.step) == 4
  changed = [
      not np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(half.reg_params), jax.tree.leaves(resumed.reg_params))
  ]
  assert any(changed)  # a_θ trains.
  for a, b in zip(jax.tree.leaves(straight.reg_params), jax.tree.leaves(resumed.reg_params)):
    np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-6)


def test_command_line_on_real_frames_with_semantic_gt_regions(tmp_path):
  mini = os.path.join(SHARED_DATA, "nyuv2_mini")
  if not os.path.isdir(mini):
    pytest.skip(f"real NYUv2 frames not found at {mini} (../shared beside the repository)")
  workdir = str(tmp_path / "run")
  proc = run_main(
      workdir,
      f"--config.dataset.data_dir={mini}",
      f"--config.label_setting={mini}/train_labelled_tasks.npy",
      "--config.delta_m_reference=full",
      "--config.num_train_steps=2",
      "--config.eval_every_steps=2",
      "--config.checkpoint_every_steps=2",
      "--config.regions.source=semantic_gt",
      "--config.regions.dir=",
      "--config.regularizer.mapping.filters=(8,16)",
      *TINY,
      config="configs/nyud_rdc.py",
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
  scalars = read_scalars(workdir)
  assert np.isfinite(scalars["train/loss/rdc"][2]) and scalars["train/rdc/valid_regions"][2] > 0
  assert np.isfinite(scalars["eval/semseg/miou"][2])


def test_default_config_has_no_regularizer():
  config = default.get_config()
  assert config.regularizer.name == "none"
  assert regularizers.create(config, np.ones((2, 3)), 13, (32, 32)) is None


_SHARDED_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tests.test_rdc import _settings, _batch_and_predictions
from mtjax.regularizers import rdc
assert jax.device_count() == 8
s = _settings(max_pairs=3)
batch, preds = _batch_and_predictions(jax.random.key(0), b=8)
batch["label_mask"] = jnp.asarray(np.random.default_rng(0).integers(0, 2, (8, 3)), jnp.float32)
params = s.encoder().init_variables(jax.random.key(1), (16, 16))["params"]
loss_fn = jax.jit(lambda p, q, b: rdc.rdc_loss(p, s, q, b, jax.random.key(2))[0])
one = float(jax.device_get(loss_fn(params, preds, batch)))
mesh = Mesh(np.array(jax.devices()), ("data",))
shard = lambda x: jax.device_put(x, NamedSharding(mesh, P("data")))
eight = float(jax.device_get(loss_fn(params, jax.tree.map(shard, preds), jax.tree.map(shard, batch))))
np.testing.assert_allclose(eight, one, rtol=1e-5)
print("OK", one, eight)
"""


def test_one_device_and_eight_devices_give_the_same_loss():
  run_on_eight_cpu_devices(_SHARDED_SCRIPT)


def test_paper_mode_weight_ramp_per_epoch():
  """weight_ramp_epochs = k: L_RC · min(epoch / k, 1), the epoch from the regularizer's own step
  count (0 in epoch 0, as the released ramp); k = 0 keeps the stateless constant-λ record."""
  config = default.get_config()
  config.regularizer.name = "rdc"
  config.regularizer.extraction = "patch"
  config.regularizer.patch_size = 8
  config.regularizer.mapping.filters = (4, 8)
  config.batch_size = 2
  label_mask = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], np.float32), (4, 1))
  assert not regularizers.create(config, label_mask, 4, (16, 16)).stateful
  config.regularizer.weight_ramp_epochs = 3
  reg = regularizers.create(config, label_mask, 4, (16, 16))  # 8 examples: 4 steps per epoch.
  assert reg.stateful
  batch, preds = _batch_and_predictions(jax.random.key(0))
  params = reg.init(jax.random.key(1), (16, 16))
  state = reg.init_state()
  plain, _ = rdc.rdc_loss(
      params,
      rdc.settings_from_config(config, config.tasks, 4, 2, 4),
      preds,
      batch,
      jax.random.key(2),
  )
  seen = []
  for step in range(14):
    loss, logs, state = reg.loss(params, preds, batch, jax.random.key(2), {}, state=state)
    seen.append(float(logs["ramp"]))
    np.testing.assert_allclose(float(loss), seen[-1] * float(plain), rtol=1e-6)
  assert int(state["step"]) == 14
  np.testing.assert_allclose(seen, [0] * 4 + [1 / 3] * 4 + [2 / 3] * 4 + [1] * 2, rtol=1e-6)
  config.regularizer.weight_ramp_epochs = -1
  with pytest.raises(ValueError, match="weight_ramp_epochs"):
    regularizers.create(config, label_mask, 4, (16, 16))
