"""RDC's region contrast as released (mtjax/regularizers/rdc_released.py) against a float64
NumPy / SciPy transcription of the behaviour of the released model/region_cons.py (a6fa360)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from mtjax.regularizers import rdc_released


def _frechet(mu1, s1, mu2, s2, eps=1e-6):
  """calculate_frechet_distance: scipy sqrtm of the shifted product, elementwise abs."""
  offset = np.eye(s1.shape[0]) * eps
  m = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
  diff = mu1 - mu2
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.abs(m))


class _Released:
  """The released Region_Contra_Loss, its behaviour in float64: a bank list of (mean, cov) of
  the last 1000 Gaussians, appended before the loss; negatives = bank entries 0 and 1."""

  def __init__(self):
    self.bank_u, self.bank_s = [], []

  def forward(self, x, y, gray):  # x, y [H, W, D]; gray [H, W]
    ux, sx, uy, sy = [], [], [], []
    for v in range(256):
      where = gray == v
      if where.sum() < 10:
        continue
      rx, ry = x[where].T, y[where].T  # [D, n]
      ux.append(rx.mean(1)), sx.append(np.cov(rx)), uy.append(ry.mean(1)), sy.append(np.cov(ry))
    self.bank_u = (self.bank_u + ux + uy)[-1000:]
    self.bank_s = (self.bank_s + sx + sy)[-1000:]
    losses = []
    for i in range(len(ux)):
      neg = np.mean(
          [np.exp(-_frechet(ux[i], sx[i], self.bank_u[k], self.bank_s[k]) / 5.4) for k in (0, 1)]
      )
      losses.append(-np.log(1.0 / (neg + 1e-6) + 1e-6))
    return np.mean(losses), len(ux)


def _slots(rng, s, h=16, w=16, d=4, values=10):
  x = rng.normal(size=(s, h, w, d)) * rng.uniform(0.2, 2.0, size=(s, 1, 1, d))
  y = 0.5 * x + rng.normal(size=(s, h, w, d)) * 0.3
  gray = rng.integers(0, values, size=(s, h, w))
  gray[:, :2] = 200  # A value with 32 pixels, far from the others.
  gray[:, 2, :5] = 7  # Extra pixels for one value; others fall below 10 at random.
  return x, y, gray


def test_bank_negatives_and_loss_equal_the_released_code_across_steps():
  rng = np.random.default_rng(0)
  ref = _Released()
  bank = rdc_released.init_bank(4)
  step = jax.jit(
      lambda bank, x, y, g, sv: rdc_released.contrast(
          bank,
          *rdc_released.region_statistics(x, g)[:2],
          *rdc_released.region_statistics(y, g)[:2],
          rdc_released.region_statistics(x, g)[2],
          sv,
      )
  )
  total = 0
  for call in range(3):  # 3 x 40 slots x ~11 regions x 2 > 1000: the ring wraps.
    x, y, gray = _slots(rng, 40)
    slot_valid = np.ones(40, bool)
    slot_valid[5] = False  # Padding: neither appends nor counts.
    bank, loss, counted = step(
        bank,
        jnp.asarray(x, jnp.float32),
        jnp.asarray(y, jnp.float32),
        jnp.asarray(gray),
        jnp.asarray(slot_valid),
    )
    want = []
    for k in range(40):
      if slot_valid[k]:
        value, n = ref.forward(x[k], y[k], gray[k])
        total += 2 * n
        want.append(value)
    got = np.asarray(loss)[slot_valid]
    assert np.all(np.asarray(counted) == slot_valid)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert int(bank["count"]) == total > 1000
  # The two negatives are the oldest of the last 1000: the ring holds the released list.
  first = (int(bank["count"]) - 1000) % 1000
  np.testing.assert_allclose(np.asarray(bank["means"])[first], ref.bank_u[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(bank["covs"])[first], ref.bank_s[0], rtol=1e-4, atol=1e-5)


def test_slots_with_many_regions_one_region_and_none_equal_the_released_code():
  # ``contrast`` computes ℓ over a slot's regions REGION_CHUNK at a time: slots of 0, 1, a
  # chunk's worth and several chunks of regions against the released loop over every region.
  rng = np.random.default_rng(1)
  h = w = 48
  x = rng.normal(size=(5, h, w, 4)) * rng.uniform(0.2, 2.0, size=(5, 1, 1, 4))
  y = 0.5 * x + rng.normal(size=(5, h, w, 4)) * 0.3
  gray = np.stack(
      [
          rng.integers(0, 150, (h, w)),  # ~15 pixels per value: about 120 regions (4 chunks).
          rng.integers(0, 32, (h, w)),  # Every value a region: exactly one chunk.
          np.full((h, w), 255),  # One region.
          np.arange(h * w).reshape(h, w) % 256,  # 9 pixels per value: no region.
          np.arange(h * w).reshape(h, w) % 256,  # Five regions (below).
      ]
  )
  gray[4, :5] = rng.integers(0, 5, (5, w))  # Values 0..4: ~50 pixels each; the rest 8 or 9.
  ref = _Released()
  ref.bank_u = [rng.normal(size=4) for _ in range(2)]  # Negatives before the first slot.
  ref.bank_s = [np.cov(rng.normal(size=(4, 30))) for _ in range(2)]
  bank = rdc_released.init_bank(4)
  bank = {
      "means": bank["means"].at[:2].set(np.stack(ref.bank_u)),
      "covs": bank["covs"].at[:2].set(np.stack(ref.bank_s)),
      "count": jnp.asarray(2, jnp.int32),
  }
  stats = lambda f: rdc_released.region_statistics(jnp.asarray(f, jnp.float32), jnp.asarray(gray))
  (mx, cx, valid), (my, cy, _) = stats(x), stats(y)
  bank, loss, counted = jax.jit(rdc_released.contrast)(
      bank, mx, cx, my, cy, valid, jnp.ones(5, bool)
  )
  regions = np.asarray(valid).sum(1)
  assert regions[0] > 3 * rdc_released.REGION_CHUNK and regions[1] == rdc_released.REGION_CHUNK
  assert regions[2] == 1 and regions[3] == 0 and regions[4] == 5
  for k in range(5):
    if regions[k] == 0:  # The released code divides by zero; here the slot does not count.
      assert not counted[k] and float(loss[k]) == 0.0
      continue
    want, n = ref.forward(x[k], y[k], gray[k])
    assert n == regions[k] and counted[k]
    np.testing.assert_allclose(float(loss[k]), want, rtol=2e-4, atol=2e-5)
  assert int(bank["count"]) == 2 + 2 * regions.sum()


def test_frechet_distance_with_the_abs_of_a_non_symmetric_root():
  rng = np.random.default_rng(1)
  for d in (2, 5, 8):
    a = rng.normal(size=(d, 3))
    b = rng.normal(size=(d, 12))
    s1, s2 = a @ a.T / 2, b @ b.T / 11  # Rank 3 and full rank.
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    got = rdc_released.frechet_distance(*(jnp.asarray(v, jnp.float32) for v in (mu1, s1, mu2, s2)))
    assert float(got) == pytest.approx(_frechet(mu1, s1, mu2, s2), rel=1e-3, abs=1e-3)


def test_unbiased_statistics_and_the_ten_pixel_rule():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(1, 6, 6, 3))
  gray = np.zeros((1, 6, 6), int)
  gray[0, :2] = 9  # 12 pixels
  gray[0, 2, :3] = 255  # 3 pixels: no region
  means, covs, valid = rdc_released.region_statistics(
      jnp.asarray(f, jnp.float32), jnp.asarray(gray)
  )
  assert np.flatnonzero(np.asarray(valid[0])).tolist() == [0, 9]
  sel = f[0][gray[0] == 9]
  np.testing.assert_allclose(means[0, 9], sel.mean(0), rtol=1e-5)
  np.testing.assert_allclose(covs[0, 9], np.cov(sel.T), rtol=1e-4, atol=1e-6)


def test_released_weight_ramps_per_epoch():
  got = [float(rdc_released.released_weight(e)) for e in (0, 1, 10, 19, 20, 30)]
  np.testing.assert_allclose(got, [0.0, 0.0075, 0.075, 0.1425, 0.15, 0.15], rtol=1e-6)


# ----------------------------------------------------------------- the regularizer in training


def _released_config():
  from configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.model.filters = (8, 8, 8, 8, 8)
  config.batch_size = 2
  config.regularizer.name, config.regularizer.mode = "rdc", "as_released"
  config.regularizer.mapping.filters = (16, 24, 32, 32)
  config.regularizer.mapping.convs_per_stage = (2, 2, 3, 3)
  config.regions.source, config.regions.dir = "files", "unused"
  config.regions.relabel, config.regions.max_regions = "none", 256
  return config


def _bilinear_up(f, factor):
  """Half-pixel bilinear upsampling by an integer factor, edges clamped (PyTorch's
  F.interpolate(mode='bilinear', align_corners=False) when upsampling), float64 NumPy."""
  _, h, w, _ = f.shape

  def axis(size):
    x = (np.arange(size * factor) + 0.5) / factor - 0.5
    x0 = np.clip(np.floor(x).astype(int), 0, size - 1)
    x1 = np.clip(x0 + 1, 0, size - 1)
    t = np.clip(x - np.floor(x), 0, 1)
    t = np.where(x < 0, 0.0, t)
    return x0, x1, t

  r0, r1, tr = axis(h)
  c0, c1, tc = axis(w)
  rows = f[:, r0] * (1 - tr)[None, :, None, None] + f[:, r1] * tr[None, :, None, None]
  return rows[:, :, c0] * (1 - tc)[None, None, :, None] + rows[:, :, c1] * tc[None, None, :, None]


def test_released_objective_sends_no_gradient_and_logs_the_released_loss():
  from mtjax import objective, regularizers, tasks, weighting  # pylint: disable=g-import-not-at-top
  from mtjax.models import registry  # pylint: disable=g-import-not-at-top
  from mtjax.regularizers import mapping  # pylint: disable=g-import-not-at-top
  from tools.bench import synthetic_batch  # pylint: disable=g-import-not-at-top

  config = _released_config()
  rng = np.random.default_rng(3)
  batch = {k: jnp.asarray(v) for k, v in synthetic_batch(2, 32, 32, 3).items()}
  batch["label_mask"] = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # onelabel
  gray = rng.integers(0, 4, size=(2, 32, 32))
  gray[:, :6] = 250
  batch["regions"] = jnp.asarray(gray, jnp.int32)
  label_mask = np.tile(np.eye(3, dtype=np.float32), (4, 1))  # 12 examples: 6 steps per epoch.
  reg = regularizers.create(config, label_mask, 13, (32, 32))
  assert reg.stateful and reg.views == 1
  model = registry.create_model(config)
  variables = model.init(jax.random.key(0), batch["image"][:1], train=False)
  reg_params = reg.init(jax.random.key(1), (32, 32))
  params = {"model": variables["params"], "regularizer": reg_params, "weighting": {}}
  w = weighting.create(config, 3, steps_per_epoch=6)
  kwargs = {
      "model": model,
      "tasks": tasks.from_config(config),
      "rng": jax.random.key(2),
      "task_weighting": w,
      "task_weights": jnp.ones(3),
  }
  fn = jax.jit(
      lambda p, state: objective.objective(
          p, variables["batch_stats"], batch, regularizer=reg, reg_state=state, **kwargs
      )
  )
  state = reg.init_state()
  state = {
      **state,
      "step": jnp.asarray(13, jnp.int32),
  }  # Epoch 2: weight 2 · min(2 / 20 · 0.075, 0.075).
  grads, (logs, _, _, new_state) = jax.grad(lambda p: fn(p, state), has_aux=True)(params)
  # The released term sends exactly nothing into the model or a_θ: training is supervised-only.
  reg_grads = jax.grad(lambda p: fn(p, state)[1][0]["loss/rdc"])(params)
  assert float(fn(params, state)[1][0]["loss/rdc"]) != 0.0
  assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(reg_grads))
  assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads["regularizer"]))
  assert float(logs["rdc/weight"]) == pytest.approx(0.015)
  assert int(new_state["step"]) == 14
  np.testing.assert_allclose(
      float(logs["loss/rdc"]), 0.015 * float(logs["rdc/released_loss"]), rtol=1e-6
  )

  # The released loss of this batch from the mapped maps, upsampled and contrasted in NumPy.
  s = rdc_released_settings(config)
  assert s.num_classes == 13
  rng = jax.random.fold_in(jax.random.key(2), 1)
  predictions = _predictions(model, variables, batch)
  _, _, slot_valid, f_pred, f_gt = mapping.mapped_slots(reg_params, s, predictions, batch, rng)
  ref = _Released()
  want = []
  for b in range(2):
    for k in range(f_pred.shape[1]):
      if not slot_valid[b, k]:
        continue
      x = _bilinear_up(np.asarray(f_pred[b, k][None], np.float64), 8)[0]
      y = _bilinear_up(np.asarray(f_gt[b, k][None], np.float64), 8)[0]
      want.append(ref.forward(x, y, gray[b, ::2, ::2])[0])
  assert len(want) == 4  # Two unlabelled tasks per example.
  np.testing.assert_allclose(float(logs["rdc/released_loss"]), sum(want) / 2, rtol=2e-3)
  assert (
      int(new_state["bank"]["count"])
      == 2
      * sum(
          int(np.sum(np.bincount(gray[b, ::2, ::2].ravel(), minlength=256) >= 10)) for b in (0, 1)
      )
      * 2
  )


def rdc_released_settings(config):
  from mtjax.regularizers import rdc  # pylint: disable=g-import-not-at-top

  return rdc.settings_from_config(config, config.tasks, 13, 2, 6)


def _predictions(model, variables, batch):
  out, _ = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
  return out


def test_released_mode_needs_the_gray_value_regions():
  from mtjax.regularizers import rdc  # pylint: disable=g-import-not-at-top

  config = _released_config()
  config.regions.relabel = "area"
  with pytest.raises(ValueError, match="relabel='none'"):
    rdc.settings_from_config(config, config.tasks, 13, 2)


def test_released_maps_convert_and_the_released_config_trains(data_dir, tmp_path):
  """tools/convert_released_regions.py on 8-bit maps written as the release's, then two steps of
  configs/nyud_rdc_as_released.py (tiny) reading them: the loss is logged, the bank fills, the
  released metrics are reported beside ours."""
  import cv2  # pylint: disable=g-import-not-at-top

  from configs import nyud_rdc_as_released  # pylint: disable=g-import-not-at-top
  from mtjax import results, train  # pylint: disable=g-import-not-at-top
  from tests.test_main import read_scalars  # pylint: disable=g-import-not-at-top
  from tools import convert_released_regions  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(4)
  root = tmp_path / "nyuv2"
  for split in ("train", "val"):
    n = 5 if split == "train" else 3
    (root / split / "sam").mkdir(parents=True)
    for folder in ("image", "label", "depth", "normal"):
      (root / split / folder).symlink_to(data_dir / split / folder)
    for i in range(n):
      gray = (rng.integers(0, 3, size=(32, 64)) * 40).astype(np.uint8)
      gray[:8] = 255
      colour = np.repeat(gray[..., None], 3, -1)  # A gray PNG saved as RGB: cvtColor keeps it.
      cv2.imwrite(str(root / split / "sam" / f"{i}.png"), colour)
  out = tmp_path / "regions"
  assert convert_released_regions.main(["--data_dir", str(root), "--out", str(out)]) == 0
  from mtjax.data import regions  # pylint: disable=g-import-not-at-top

  ids = regions.read_map(regions.map_path(out, "train", "0"), "0", (32, 64))
  assert set(np.unique(ids)) <= {0, 40, 80, 255}
  assert (
      convert_released_regions.main(
          ["--data_dir", str(root), "--split", "val", "--out", str(tmp_path / "val_maps")]
      )
      == 0
  )
  (root / "train" / "sam" / "3.png").unlink()
  assert convert_released_regions.main(["--data_dir", str(root), "--out", str(tmp_path / "x")]) == 1

  config = nyud_rdc_as_released.get_config()
  config.dataset.data_dir = str(root)
  config.regions.dir = str(out)
  config.model.pretrained = ""
  config.batch_size, config.num_train_steps = 2, 2
  config.eval_every_steps = config.checkpoint_every_steps = config.log_every_steps = 1
  config.num_panel_images = 1
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, str(workdir))
  scalars = read_scalars(str(workdir))
  assert set(scalars["train/rdc/bank_count"]) == {1, 2}
  assert scalars["train/rdc/bank_count"][2] > scalars["train/rdc/bank_count"][1] > 0
  assert scalars["train/rdc/weight"][1] == 0.0  # Epoch 0.
  final = results.final_evaluation(results.read(str(workdir)))["metrics"]
  assert "normal_as_released" in final and "semseg_as_released" in final
