"""TFDS builder ``procedural_rooms``: NYUv2-like labelled indoor frames rendered with no download.

Each example is ``mtjax.data.procedural.render_scene(example_seed(split, i), H, W)`` (conventions,
units and references in that module). Written as ``array_record`` by default so that
``builder.as_data_source(split)`` gives thread-safe random access. Rooms are rendered in parallel
worker processes (one per CPU core; the examples do not depend on how many) and progress is
logged as rooms rendered, since nothing is downloaded.

Versions: 1.1.0 adds ``edge`` (``procedural.edge_map``); its other features are bit-identical to
1.0.0's. TFDS opens the latest version unless told otherwise and generates only that one: where a
1.0.0 dataset was prepared earlier, 1.1.0 is generated beside it (``<data_dir>/procedural_rooms/
<config>/1.1.0``), and the 1.0.0 files stay readable with ``version="1.0.0"``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import time

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mtjax.data import procedural

SPLITS = ("train", "validation", "test")
# Seeds of split s are s * _SPLIT_STRIDE + index: disjoint between splits for < 10^7 examples.
_SPLIT_STRIDE = 10_000_000


def example_seed(split: str, index: int) -> int:
  """Seed of example ``index`` of ``split`` (one of ``SPLITS``): stable across configs/versions.

  Raises:
    ValueError: unknown split or index outside [0, 10^7).
  """
  if split not in SPLITS or not 0 <= index < _SPLIT_STRIDE:
    raise ValueError(f"bad split/index {split!r}/{index}; splits are {SPLITS}, index < 10^7.")
  return SPLITS.index(split) * _SPLIT_STRIDE + int(index)


@dataclasses.dataclass
class ProceduralRoomsConfig(tfds.core.BuilderConfig):
  """Sizes (examples per split) and resolution (height x width pixels)."""

  num_train: int = 1000
  num_validation: int = 200
  num_test: int = 200
  height: int = 96
  width: int = 128


class ProceduralRooms(tfds.core.GeneratorBasedBuilder):
  """Procedural rooms: image, 13-class semantic, z-depth, camera normal, instance, edge, id."""

  VERSION = tfds.core.Version("1.1.0")
  # Readable where prepared earlier, e.g. ``ProceduralRooms(version="1.0.0")``; not generated.
  SUPPORTED_VERSIONS = [tfds.core.Version("1.0.0")]
  RELEASE_NOTES = {
      "1.1.0": "Adds edge, uint8 [H, W, 1]: 1 on instance and depth boundaries, 0 elsewhere, "
      "255 where invalid (procedural.edge_map). The other features are bit-identical to 1.0.0.",
      "1.0.0": "Initial release.",
  }
  BUILDER_CONFIGS = [
      ProceduralRoomsConfig(name="default", description="1000/200/200 at 96x128."),
      ProceduralRoomsConfig(
          name="tiny",
          description="8/4/4 at 32x64, for tests.",
          num_train=8,
          num_validation=4,
          num_test=4,
          height=32,
          width=64,
      ),
  ]
  DEFAULT_CONFIG_NAME = "default"
  # No downloads, hence no checksums file; also avoids tfds's ``code_path`` lookup, which needs
  # the optional ``importlib_resources`` package.
  url_infos = {}

  def _info(self) -> tfds.core.DatasetInfo:
    h, w = self.builder_config.height, self.builder_config.width
    features = {
        "image": tfds.features.Image(shape=(h, w, 3), dtype=np.uint8),
        "semantic": tfds.features.Tensor(shape=(h, w), dtype=np.int32),
        "depth": tfds.features.Tensor(shape=(h, w, 1), dtype=np.float32),
        "normal": tfds.features.Tensor(shape=(h, w, 3), dtype=np.float32),
        "instance": tfds.features.Tensor(shape=(h, w), dtype=np.int32),
        "id": tfds.features.Text(),
    }
    if _has_edge(self.version):
      features["edge"] = tfds.features.Tensor(shape=(h, w, 1), dtype=np.uint8)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        # Keep generation order, so that record i of a split is example i (``example_seed``).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    sizes = dict(zip(SPLITS, (config.num_train, config.num_validation, config.num_test)))
    # One pool of worker processes renders every split; the last split to finish shuts it down.
    # "spawn": the parent may already run JAX's and TensorFlow's threads, which fork would copy.
    workers = min(os.cpu_count() or 1, max(sum(sizes.values()) // 16, 1))
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn")
    )
    pending = set(SPLITS)

    def generate(split):
      try:
        yield from self._generate_examples(split, sizes[split], pool)
      finally:
        pending.discard(split)
        if not pending:
          pool.shutdown()

    return {s: generate(s) for s in SPLITS}

  def _generate_examples(self, split, num, pool):
    h, w = self.builder_config.height, self.builder_config.width
    render = functools.partial(_render, height=h, width=w, edge=_has_edge(self.version))
    seeds = [example_seed(split, i) for i in range(num)]
    start, every = time.monotonic(), max(num // 5, 50)
    for i, ex in enumerate(pool.map(render, seeds, chunksize=8)):
      key = f"{split}_{i:07d}"
      yield key, ex | {"id": key}
      if (i + 1) % every == 0 or i + 1 == num:
        logging.info(
            "procedural_rooms: %s %d/%d rooms rendered (%.0f s)",
            split,
            i + 1,
            num,
            time.monotonic() - start,
        )

  # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
  # here; this dataset downloads nothing, so say what happens instead.
  def _log_download_bytes(self) -> None:
    c = self.builder_config
    total = c.num_train + c.num_validation + c.num_test
    workers = min(os.cpu_count() or 1, max(total // 16, 1))
    # ~0.1 s per 96x128 room on one core of an AMD EPYC (AVX2).
    minutes = total * 0.1 * (c.height * c.width) / (96 * 128) / workers / 60
    logging.info(
        "generating procedural_rooms/%s: %s rooms at %dx%d, nothing is downloaded, into %s; "
        "once, about %.1f min on %d cores",
        c.name,
        f"{total:,}",
        c.height,
        c.width,
        self.data_dir,
        max(minutes, 0.1),
        workers,
    )

  def _log_download_done(self) -> None:
    logging.info(
        "procedural_rooms/%s generated in %s; later runs reuse it",
        self.builder_config.name,
        self.data_dir,
    )


def _has_edge(version: tfds.core.Version) -> bool:
  """Whether examples of dataset ``version`` have ``edge`` (added in 1.1.0)."""
  return version >= "1.1.0"


def _render(seed: int, *, height: int, width: int, edge: bool) -> dict[str, np.ndarray]:
  """The stored features of one example (a worker process's task); ``edge``: with edge."""
  ex = procedural.render_scene(seed, height, width)
  keys = ("image", "semantic", "depth", "normal", "instance") + (("edge",) if edge else ())
  return {k: ex[k] for k in keys}
