"""Training length and learning-rate schedule in epochs, so that they stay right for any dataset
size and global batch (MTPSL's NYUv2 setting: 200 epochs of 397 steps, StepLR stepped at the start
of every epoch; configs/default.py).
"""

import jax.numpy as jnp
import ml_collections
import optax


def steps_per_epoch(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """floor(num_examples / config.batch_size): MTPSL's DataLoader(drop_last=True) epoch length.

  Raises:
    ValueError: fewer training examples than one global batch.
  """
  steps = num_examples // config.batch_size
  if steps < 1:
    raise ValueError(
        f"{num_examples} training examples < config.batch_size={config.batch_size}: expected at "
        "least one full batch per epoch"
    )
  return steps


def num_train_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """Total updates: `config.num_train_steps` when > 0, else round(num_epochs · steps_per_epoch).

  Raises:
    ValueError: neither is positive (or the epoch length is 0; see `steps_per_epoch`).
  """
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  if config.num_epochs <= 0:
    raise ValueError(
        f"config.num_train_steps={config.num_train_steps} and config.num_epochs="
        f"{config.num_epochs}: expected one of them > 0"
    )
  return max(1, round(config.num_epochs * steps_per_epoch(config, num_examples)))


SCHEDULES = ("step", "cosine_warm_restarts", "poly")


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """The model's learning rate after k updates, by ``config.lr_schedule``:

  * ``step``: step decay in epochs: lr(k) = learning_rate · lr_decay_factor^#{e in
    lr_decay_epochs : k >= round(e · steps_per_epoch)}. With MTPSL's (99, 199) and 397 steps per
    epoch (NYUv2, batch 2) this is its StepLR stepped at the start of each epoch: 1e-4 for steps
    0..39,302, 5e-5 up to 79,002, then 2.5e-5.
  * ``cosine_warm_restarts``: PyTorch's CosineAnnealingWarmRestarts(T_0 = lr_restart_epochs,
    T_mult = 1, eta_min = lr_min) stepped once per epoch, as RDC's released script
    (``nyu_mtl_region_cons_gaussian.py`` line 122, ``scheduler.step()`` after each epoch): in
    epoch e = floor(k / steps_per_epoch), lr = lr_min + (learning_rate − lr_min) · (1 +
    cos(π · (e mod T_0) / T_0)) / 2.
  * ``poly``: MTI-Net's and MT-CP's polynomial decay, set at the start of each epoch
    (``utils/common_config.py`` ``adjust_learning_rate``): in epoch e, lr = learning_rate ·
    (1 − e / num_epochs)^lr_poly_power (0.9 in both).

  Raises:
    ValueError: an unknown schedule, a negative decay epoch, T_0 < 1, or for ``poly`` a
      non-positive ``num_epochs``.
  """
  name = config.get("lr_schedule", "step")
  if name not in SCHEDULES:
    raise ValueError(f"config.lr_schedule={name!r}: expected one of {SCHEDULES}")
  if name == "cosine_warm_restarts":
    period = int(config.lr_restart_epochs)
    if period < 1:
      raise ValueError(f"config.lr_restart_epochs={config.lr_restart_epochs}: expected >= 1")
    peak, floor = config.learning_rate, config.lr_min

    def cosine(step):
      epoch = jnp.asarray(step) // steps_per_epoch
      phase = (epoch % period).astype(jnp.float32) / period
      return floor + (peak - floor) * (1.0 + jnp.cos(jnp.pi * phase)) / 2.0

    return cosine
  if name == "poly":
    total, power = float(config.num_epochs), float(config.get("lr_poly_power", 0.9))
    if total <= 0:
      raise ValueError(f"config.num_epochs={total}: the poly schedule needs a positive length")
    peak = config.learning_rate

    def poly(step):
      epoch = (jnp.asarray(step) // steps_per_epoch).astype(jnp.float32)
      return peak * jnp.maximum(1.0 - epoch / total, 0.0) ** power

    return poly
  epochs = tuple(float(e) for e in config.lr_decay_epochs)
  if any(e < 0 for e in epochs):
    raise ValueError(f"config.lr_decay_epochs={epochs}: expected epochs >= 0")
  boundaries = jnp.array([round(e * steps_per_epoch) for e in epochs], jnp.int32)
  lr, factor = config.learning_rate, config.lr_decay_factor

  def schedule(step):
    return lr * factor ** jnp.sum(jnp.asarray(step) >= boundaries).astype(jnp.float32)

  return schedule


def epoch_step_decay(
    peak: float, step_epochs: int, factor: float, steps_per_epoch: int
) -> optax.Schedule:
  """PyTorch's StepLR(step_size = step_epochs, gamma = factor) stepped once per epoch: in epoch
  e = floor(k / steps_per_epoch) the rate is peak · factor^floor(e / step_epochs). MTPSL's FiLM
  rows: StepLR(30, 0.5) (``nyu_mtl_xtc.py``); RDC's released: StepLR(10, 0.5).

  Raises:
    ValueError: step_epochs < 1.
  """
  if step_epochs < 1:
    raise ValueError(f"StepLR step_size={step_epochs}: expected >= 1 epoch")

  def schedule(step):
    epoch = jnp.asarray(step) // steps_per_epoch
    return peak * factor ** (epoch // step_epochs).astype(jnp.float32)

  return schedule
