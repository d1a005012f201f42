"""The example source a config names (``config.dataset``): the input of ``mtjax.data.pipeline``."""

from __future__ import annotations

import functools

import jax
import ml_collections
from jax.experimental import multihost_utils

from mtjax.data import cityscapes, nyudmt, nyuv2, pascal_context, procedural_source

DATASETS = ("nyuv2", "procedural_rooms", "nyudmt", "pascal_context", "cityscapes")
# The canvas of the variable-size datasets by geometry (config.dataset.size = () picks it):
# MTI-Net / MT-CP resize NYUD-MT to 480x640 and PASCAL to 512x512; InvPT pads NYUD-MT to 448x576
# and PASCAL to 512x512 (docs/datasets.md).
DEFAULT_SIZES = {
    ("nyudmt", "resize"): (480, 640),
    ("nyudmt", "pad"): (448, 576),
    ("pascal_context", "resize"): (512, 512),
    ("pascal_context", "pad"): (512, 512),
}


def canvas_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(H, W) the variable-size datasets are fitted to: ``config.dataset.size`` or the default of
  the dataset and geometry (``DEFAULT_SIZES``).

  Raises:
    ValueError: a size that is not two positive ints, or an unknown dataset / geometry pair.
  """
  size = tuple(config.dataset.size or ())
  if not size:
    key = (config.dataset.name, config.dataset.geometry)
    if key not in DEFAULT_SIZES:
      raise ValueError(
          f"config.dataset.geometry={config.dataset.geometry!r} for {config.dataset.name!r}: "
          f"expected one of {sorted(DEFAULT_SIZES)}"
      )
    return DEFAULT_SIZES[key]
  if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
    raise ValueError(f"config.dataset.size={size!r}: expected (H, W), two positive ints, or ()")
  return size


def create_source(config: ml_collections.ConfigDict, split: str):
  """The example source of `config.dataset` for `split`, validated on construction.

  ``nyuv2``: ``nyuv2.NYUv2Split(config.dataset.data_dir, split)``. ``cityscapes``:
  ``cityscapes.CityscapesSplit`` of ``config.tasks``. ``nyudmt`` / ``pascal_context``: the
  reader of ``config.tasks`` fitted to ``canvas_size(config)`` by ``config.dataset.geometry``,
  in the training role for ``config.dataset.train_split`` and the evaluation role otherwise
  (``mtjax.data.geometry``); NYUD-MT in the archive format ``config.dataset.archive``. ``procedural_rooms``: the TFDS
  dataset in ``config.dataset.data_dir`` (TFDS's default dir when empty), builder config
  ``config.dataset.builder_config``, offering ``edge`` only when ``config.tasks`` asks for it (so
  the label settings of the three-task configs are unchanged); generated on first use by process
  0 while the other processes wait, then opened by every process.

  Returns:
    A source with ``num_examples``, ``tasks``, ``image_shape`` and ``load`` (the protocol of
    ``mtjax.data.pipeline``).

  Raises:
    ValueError: unknown ``config.dataset.name``. FileNotFoundError / ValueError from the source:
      missing files or a bad layout, naming the path.
  """
  name, tasks = config.dataset.name, tuple(config.tasks)
  if name == "nyuv2":
    return nyuv2.NYUv2Split(config.dataset.data_dir, split)
  if name == "cityscapes":
    return cityscapes.CityscapesSplit(config.dataset.data_dir, split, tasks=tasks)
  if name in ("nyudmt", "pascal_context"):
    fitting = {
        "tasks": tasks,
        "size": canvas_size(config),
        "geometry": config.dataset.geometry,
        "role": "train" if split == config.dataset.train_split else "eval",
        "normal_interpolation": config.dataset.normal_interpolation,
    }
    if name == "nyudmt":
      return nyudmt.NYUDMTSplit(
          config.dataset.data_dir, split, archive=config.dataset.archive, **fitting
      )
    return pascal_context.PascalContextSplit(
        config.dataset.data_dir, split, db_info_dir=config.dataset.db_info_dir or None, **fitting
    )
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
