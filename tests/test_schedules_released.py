"""Learning-rate schedules of the released recipes against PyTorch's own schedulers, stepped once
per epoch as the released scripts step them: CosineAnnealingWarmRestarts (RDC's model) and StepLR
(the FiLM rows of MTPSL and RDC)."""

import importlib.util
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mtjax import optimizer, regularizers, schedule

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason='torch not installed (pip install -e ".[hrnet]")',
)

# torch crashes a process that has imported TensorFlow (pytest workers have): the schedulers run
# in a subprocess, stepped once per epoch as the released scripts step them.
_TORCH = """
import json, sys, torch
kind, epochs, lr, a, b = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
p = torch.nn.Parameter(torch.zeros(1))
opt = torch.optim.Adam([p], lr=lr)
if kind == "cosine":
  sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=int(a), T_mult=1, eta_min=float(b))
else:
  sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(a), gamma=float(b))
out = []
for _ in range(epochs):
  out.append(opt.param_groups[0]["lr"])
  opt.step()
  sched.step()
print(json.dumps(out))
"""


def _torch_per_epoch(kind, epochs, lr, a, b):
  proc = subprocess.run(
      [sys.executable, "-c", _TORCH, kind, str(epochs), str(lr), str(a), str(b)],
      capture_output=True,
      text=True,
      timeout=300,
      check=True,
  )
  return np.array(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_cosine_warm_restarts_per_epoch_equals_pytorch():
  config = default.get_config()
  config.lr_schedule, config.learning_rate = "cosine_warm_restarts", 5e-4
  config.lr_restart_epochs, config.lr_min = 10, 1e-6
  spe = 3
  lr = schedule.learning_rate_schedule(config, spe)
  want = _torch_per_epoch("cosine", 25, 5e-4, 10, 1e-6)
  got = np.array([[lr(e * spe + i) for i in range(spe)] for e in range(25)])
  np.testing.assert_allclose(got, np.repeat(want[:, None], spe, 1), rtol=1e-5)
  config.lr_schedule = "cosine"
  with pytest.raises(ValueError, match="lr_schedule"):
    schedule.learning_rate_schedule(config, spe)


@pytest.mark.parametrize("step_size", [10, 30])
def test_film_step_lr_equals_pytorch_and_drives_the_film_rows(step_size):
  want = _torch_per_epoch("step", 70, 1e-3, step_size, 0.5)
  got = [schedule.epoch_step_decay(1e-3, step_size, 0.5, 4)(4 * e + 3) for e in range(70)]
  np.testing.assert_allclose(got, want, rtol=1e-6)

  # In the optimizer: the FiLM group follows its StepLR, the rest the model's schedule.
  config = default.get_config()
  config.regularizer.film_lr_step_epochs = step_size
  record = regularizers.Regularizer(
      name="rdc",
      weight=1.0,
      batch_keys=(),
      init=None,
      loss=None,
      param_groups=lambda p: {"gamma": "film", "conv": "mapping"},
      learning_rates={"film": 1e-3, "mapping": 1e-4},
  )
  tx = optimizer.create_optimizer(config, 2, record)
  params = {
      "model": {"w": jnp.zeros(3)},
      "regularizer": {"gamma": jnp.zeros(3), "conv": jnp.zeros(3)},
      "weighting": {},
  }
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  sizes = []
  for _ in range(2 * step_size + 2):  # Adam on a constant gradient: |update| = lr (to 1e-8).
    updates, state = tx.update(
        grads, state, params, task_losses=jnp.ones(3), task_counts=jnp.ones(3)
    )
    sizes.append(
        (float(-updates["regularizer"]["gamma"][0]), float(-updates["regularizer"]["conv"][0]))
    )
  film = [s[0] for s in sizes]
  np.testing.assert_allclose(film[0], 1e-3, rtol=1e-4)
  np.testing.assert_allclose(film[2 * step_size - 1], 1e-3, rtol=1e-4)  # Last step of epoch k-1.
  np.testing.assert_allclose(film[2 * step_size], 5e-4, rtol=1e-4)  # First of epoch k.
  np.testing.assert_allclose([s[1] for s in sizes], 1e-4, rtol=1e-4)  # Model's: no decay yet.


def test_nyud_xtc_epoch_boundaries_are_mtpsl_xtc_scripts():
  """nyu_mtl_xtc.py steps both schedulers after each epoch: the model's lr halves entering epoch
  100 (nyu_mtl_sl.py: 99), the FiLM rows' entering 30, 60, ... (397 steps per epoch)."""
  from configs import nyud, nyud_xtc  # pylint: disable=g-import-not-at-top

  spe = 397
  xtc_lr = schedule.learning_rate_schedule(nyud_xtc.get_config(), spe)
  sl_lr = schedule.learning_rate_schedule(nyud.get_config(), spe)
  first = lambda e: e * spe
  np.testing.assert_allclose(
      [xtc_lr(first(99)), xtc_lr(first(100) - 1), xtc_lr(first(100))], [1e-4, 1e-4, 5e-5]
  )
  np.testing.assert_allclose([sl_lr(first(99) - 1), sl_lr(first(99))], [1e-4, 5e-5])
  config = nyud_xtc.get_config()
  film = schedule.epoch_step_decay(
      config.regularizer.film_learning_rate,
      config.regularizer.film_lr_step_epochs,
      config.regularizer.film_lr_step_factor,
      spe,
  )
  np.testing.assert_allclose(
      [film(first(30) - 1), film(first(30)), film(first(60)), film(first(180))],
      [1e-3, 5e-4, 2.5e-4, 1e-3 / 64],
  )
  assert config.augment.second_view == "of_first"


def test_poly_schedule_is_mt_cps_per_epoch_decay():
  config = default.get_config()
  config.lr_schedule, config.learning_rate, config.num_epochs = "poly", 5e-5, 100.0
  spe = 4
  lr = schedule.learning_rate_schedule(config, spe)
  got = np.array([[lr(e * spe + i) for i in range(spe)] for e in range(100)])
  want = 5e-5 * (1.0 - np.arange(100) / 100.0) ** 0.9  # adjust_learning_rate, epoch by epoch.
  np.testing.assert_allclose(got, np.repeat(want[:, None], spe, 1), rtol=1e-5)
  config.num_epochs = 0.0
  with pytest.raises(ValueError, match="poly schedule needs a positive length"):
    schedule.learning_rate_schedule(config, spe)


_ADAMW = """
import json, sys, torch
lr, wd, grads = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
opt = torch.optim.AdamW([p], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
out = []
for g in grads:
  p.grad = torch.tensor(g, dtype=torch.float64)
  opt.step()
  out.append(p.detach().tolist())
print(json.dumps(out))
"""


def test_adamw_equals_pytorch_adamw_and_unknown_optimizers_are_named():
  grads = [[0.1, -0.2, 0.3], [0.5, 0.1, -0.4], [-0.3, 0.2, 0.1], [0.05, -0.5, 0.2]]
  proc = subprocess.run(
      [sys.executable, "-c", _ADAMW, "0.01", "0.1", json.dumps(grads)],
      capture_output=True, text=True, timeout=300, check=True,
  )  # fmt: skip
  want = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
  config = default.get_config()
  config.optimizer, config.weight_decay, config.learning_rate = "adamw", 0.1, 0.01
  tx = optimizer.create_optimizer(config, steps_per_epoch=10)
  params = {"model": {"w": jnp.array([0.5, -1.0, 2.0])}, "regularizer": {}, "weighting": {}}
  state = tx.init(params)
  got = []
  for g in grads:
    grad = {"model": {"w": jnp.array(g)}, "regularizer": {}, "weighting": {}}
    ones = jnp.ones(len(config.tasks))
    updates, state = tx.update(grad, state, params, task_losses=ones, task_counts=ones)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    got.append(np.asarray(params["model"]["w"]))
  np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-7)
  config.optimizer = "sgd"
  with pytest.raises(ValueError, match="config.optimizer='sgd'"):
    optimizer.create_optimizer(config, steps_per_epoch=10)
