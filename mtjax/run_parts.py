"""What a run of a config is made of: its tasks, mesh, training source and label mask, model,
regularizer, task weighting, optimizer and freshly initialised state (`build_run`), and its training
batches (`train_batches`). `mtjax.train.train_and_evaluate` trains them; tools build the same run to
restore a checkpoint into or to time its step."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

from mtjax import optimizer, regularizers, schedule, seeds, sharding, weighting
from mtjax import tasks as tasks_lib
from mtjax.data import augment, label_settings, pipeline, regions
from mtjax.data.sources import create_source
from mtjax.models import registry
from mtjax.tasks import Task
from mtjax.train_state import TrainState, create_train_state

__all__ = ["RunParts", "build_run", "train_batches"]


@dataclasses.dataclass(frozen=True)
class RunParts:
  """What a run of a config is made of, before any checkpoint is restored (`build_run`)."""

  tasks: tuple[Task, ...]
  mesh: jax.sharding.Mesh
  train_source: Any
  label_mask: np.ndarray  # float32 [N, T], the label setting of the training split.
  epoch_steps: int
  model: nn.Module
  regularizer: regularizers.Regularizer | None
  task_weighting: weighting.Weighting
  tx: optax.GradientTransformation
  state: TrainState  # Freshly initialised from the seed's init stream.


def build_run(config: ml_collections.ConfigDict) -> RunParts:
  """The tasks, mesh, training source, label mask, model, regularizer, task weighting,
  optimizer and initial state of `config`: what `train_and_evaluate` trains, and what a tool
  restores a run's checkpoint into (``checkpoint.restore_latest(manager, parts.state)``).

  Raises:
    ValueError / FileNotFoundError: bad config or data (the sources, label settings, models).
  """
  tasks = tasks_lib.from_config(config)
  mesh = sharding.create_mesh()
  train_source = create_source(config, config.dataset.train_split)
  label_mask = label_settings.resolve_label_mask(
      config.label_setting,
      num_examples=train_source.num_examples,
      # Masks are drawn over all the dataset's tasks (``label_tasks``, where a reader offers
      # fewer than it has), so a run of a subset labels the same images per task.
      dataset_tasks=getattr(train_source, "label_tasks", train_source.tasks),
      tasks=tuple(config.tasks),
      seed=seeds.stream_seed(config.seed, "labels"),
  )
  epoch_steps = schedule.steps_per_epoch(config, train_source.num_examples)
  model = registry.create_model(config)
  regularizer = regularizers.create(
      config, label_mask, config.dataset.num_classes, train_source.image_shape
  )
  task_weighting = weighting.create(config, len(config.tasks), epoch_steps)
  tx = optimizer.create_optimizer(config, epoch_steps, regularizer, task_weighting)
  state = create_train_state(
      model,
      tx,
      seeds.stream_key(config.seed, "init"),
      train_source.image_shape,
      mesh,
      regularizer,
      task_weighting,
  )
  return RunParts(
      tasks, mesh, train_source, label_mask, epoch_steps, model, regularizer, task_weighting, tx,
      state,
  )


def train_batches(config: ml_collections.ConfigDict, parts: RunParts, start_step: int = 0):
  """This process's training batches of `parts` (`build_run`) from `start_step` on, as the
  training loop reads them: an iterator of host-local NumPy batches (`pipeline.train_dataset`)."""
  return pipeline.train_dataset(
      parts.train_source,
      label_mask=parts.label_mask,
      per_process_batch_size=sharding.per_process_batch_size(config.batch_size),
      seed=seeds.stream_seed(config.seed, "data"),
      start_step=start_step,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      **augment.options(config.augment),
      regions=regions.RegionSpec.from_config(config.regions),
      views=1 if parts.regularizer is None else parts.regularizer.views,
      tasks=parts.tasks,
  ).as_numpy_iterator()
