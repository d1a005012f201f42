"""The optimizer of a run: Adam (PyTorch's defaults, as MTPSL), or AdamW for the model (MT-CP),
over the model's, the regularizer's and the task weighting's parameters, each group on its
learning-rate schedule, then the task weighting's transform (``mtjax.weighting``)."""

import jax
import ml_collections
import optax

from mtjax import regularizers, schedule, weighting


def create_optimizer(
    config: ml_collections.ConfigDict,
    steps_per_epoch: int,
    regularizer: regularizers.Regularizer | None = None,
    task_weighting: weighting.Weighting | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Adam (or `config.optimizer = "adamw"` with `config.weight_decay` for the model's params)
  with `schedule.learning_rate_schedule` on the tree ``{"model", "regularizer",
  "weighting"}`` (``mtjax.train.trainable``).

  The model (and the weighting's params) train at `config.learning_rate`, each of the
  regularizer's parameter groups at its own peak rate (`Regularizer.learning_rates`) on the same
  schedule, except the FiLM rows when `config.regularizer.film_lr_step_epochs` > 0: their own
  StepLR (`schedule.epoch_step_decay`; MTPSL's ``nyu_mtl_xtc.py`` and RDC's released script).
  Then the task weighting's transform (default: `weighting.create`), whose `update` takes the
  step's `task_losses` and `task_counts`.

  Args:
    config: the run's config (learning_rate, lr schedule fields, regularizer.film_lr_step_*).
    steps_per_epoch: optimizer steps per epoch (the schedules' epoch boundaries).
    regularizer: its parameter groups and rates; None: no regularizer params.
    task_weighting: default `weighting.create(config, len(config.tasks), steps_per_epoch)`.

  Returns:
    An optax transform whose `update` needs the keyword args `task_losses`, `task_counts`.

  Raises:
    ValueError: an unknown `config.optimizer`; from `schedule.learning_rate_schedule` on a bad
      schedule config.
  """
  if task_weighting is None:
    task_weighting = weighting.create(config, len(config.tasks), steps_per_epoch)
  model_schedule = schedule.learning_rate_schedule(config, steps_per_epoch)
  name = config.get("optimizer", "adam")
  if name == "adam":
    transforms = {"model": optax.adam(model_schedule)}
  elif name == "adamw":  # PyTorch's AdamW: p ← p − lr (adam(g) + weight_decay p), every param.
    transforms = {"model": optax.adamw(model_schedule, weight_decay=config.weight_decay)}
  else:
    raise ValueError(f"config.optimizer={name!r}: expected 'adam' or 'adamw'")
  group_fn = lambda reg_params: {}
  if regularizer is not None:
    film_step = int(config.regularizer.get("film_lr_step_epochs", 0))
    for group, lr in regularizer.learning_rates.items():
      ratio = lr / config.learning_rate
      if group == "film" and film_step > 0:  # Its own StepLR (MTPSL, RDC as released).
        transforms[group] = optax.adam(
            schedule.epoch_step_decay(
                lr, film_step, config.regularizer.film_lr_step_factor, steps_per_epoch
            )
        )
        continue
      transforms[group] = optax.adam(lambda step, r=ratio: r * model_schedule(step))
    group_fn = regularizer.param_groups

  def labels(tree):
    return {
        "model": jax.tree.map(lambda _: "model", tree["model"]),
        "regularizer": group_fn(tree["regularizer"]),
        "weighting": jax.tree.map(lambda _: "model", tree["weighting"]),
    }

  return optax.chain(optax.multi_transform(transforms, labels), task_weighting.transform)
