"""The example source a config names (``config.dataset``): the input of ``mtjax.data.pipeline``."""

from __future__ import annotations

import functools

import jax
import ml_collections
from jax.experimental import multihost_utils

from mtjax.data import nyuv2, procedural_source

DATASETS = ("nyuv2", "procedural_rooms")


def create_source(config: ml_collections.ConfigDict, split: str):
  """The example source of `config.dataset` for `split`, validated on construction.

  ``nyuv2``: ``nyuv2.NYUv2Split(config.dataset.data_dir, split)``. ``procedural_rooms``: the TFDS
  dataset in ``config.dataset.data_dir`` (TFDS's default dir when empty), builder config
  ``config.dataset.builder_config``, offering ``edge`` only when ``config.tasks`` asks for it (so
the label settings of the three-task configs are unchanged); generated on first use by process 0 while the other processes
  wait, then opened by every process.

  Returns:
    A source with ``num_examples``, ``tasks``, ``image_shape`` and ``load`` (the protocol of
    ``mtjax.data.pipeline``).

  Raises:
    ValueError: unknown ``config.dataset.name``. FileNotFoundError / ValueError from the source:
      missing files or a bad layout, naming the path.
  """
  if config.dataset.name == "nyuv2":
    return nyuv2.NYUv2Split(config.dataset.data_dir, split)
  if config.dataset.name == "procedural_rooms":
    make = functools.partial(
        procedural_source.ProceduralRoomsSource,
        split,
        data_dir=config.dataset.data_dir or None,
        config_name=config.dataset.builder_config or "default",
        tasks=tuple(config.tasks),
    )
    source = make() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices(f"procedural_rooms {split} prepared")
    return source if source is not None else make()
  raise ValueError(f"config.dataset.name={config.dataset.name!r}: expected one of {DATASETS}")
