"""Exporting region maps ahead of training: the superpixel method and the resumable, shardable
export loop that ``tools/export_regions.py`` runs for every method.

The format is ``mtjax.data.regions`` (docs/regions.md); this module only decides which
maps to compute and writes them through it. Nothing here imports torch: the SAM method lives in
``tools/export_regions.py`` and reaches the loop through the ``Method`` protocol below.

**Image sources**: ``mtjax.data.region_images`` (NYUv2's layout, a TFDS dataset, a folder, a
pipeline source; re-exported here).

**The loop** (``export``): the examples are the first ``limit`` of the split, of which shard ``i``
of ``K`` takes every K-th starting at i. A map that exists is finished (maps are written to a
temporary name and renamed) and skipped; ``overwrite`` recomputes every map of the run and accepts a
manifest of other parameters. The manifest is written before the first map (so a resumed or
parallel run is checked against it) and updated after the last: its counts are recounted from the
directory's listing, its timing adds this run's.

**Where the maps go.** ``out`` is a local path or a bucket URL (``gs://...``, through
``mtjax.fileio``). Locally the manifest's read-modify-write holds an advisory file lock
(``fcntl.flock`` on ``REGION_DIR/.manifest.lock``), so K shards writing one directory — K
processes, or K hosts on a shared file system with POSIX locks — merge their counts and timings.
A bucket has no such lock: maps are single-object uploads (never partial), the first manifest every
shard writes is the same, and every finishing run recounts the maps from the listing; only the
``timing`` sums of shards that finish at the same moment can miss one another's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from etils import epath

import numpy as np

from mtjax import fileio
from mtjax.data import regions
from mtjax.data.region_images import (  # noqa: F401  (re-exported)
    IMAGE_SUFFIXES,
    BadImageError,
    ExportError,
    Images,
    folder_images,
    nyuv2_images,
    source_images,
    tfds_images,
)

SUPERPIXEL_ALGORITHMS = ("felzenszwalb", "slic")


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


class Method(Protocol):
  """A region exporter: ``name`` and ``parameters`` go to the manifest and decide whether two runs
  may share a directory; ``package_versions`` is provenance; calling it on uint8 [H, W, 3] RGB
  returns the file values (uint16 [H, W], 0 = none, 1..N by area: ``regions.paint_masks`` or
  ``regions.renumber_by_area``)."""

  name: str
  parameters: dict[str, Any]
  package_versions: dict[str, str]

  def __call__(self, image: np.ndarray) -> np.ndarray:
    ...


def package_versions(*distributions: str) -> dict[str, str]:
  """The installed version of each distribution (``"not installed"`` where absent)."""
  out = {}
  for name in ("mtjax", "numpy", *distributions):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "not installed"
  return out


@dataclasses.dataclass(frozen=True)
class Superpixels:
  """Weight-free regions: scikit-image's Felzenszwalb–Huttenlocher graph segmentation (default)
  or SLIC, renumbered by area (``regions.renumber_by_area``).

  Defaults are ours, chosen for NYUv2's 288x384 frames so that a frame gets tens of regions of
  the size of objects and surfaces, like SAM's (docs/regions.md): ``felzenszwalb`` with
  ``scale`` 300, ``sigma`` 0.8 (scikit-image's), ``min_size`` 100 pixels; ``slic`` with
  ``n_segments`` 64, ``compactness`` 10, ``sigma`` 0.8.

  Raises:
    ValueError: an unknown algorithm or a non-positive parameter.
  """

  algorithm: str = "felzenszwalb"
  scale: float = 300.0
  sigma: float = 0.8
  min_size: int = 100
  n_segments: int = 64
  compactness: float = 10.0

  name = "superpixel"

  def __post_init__(self):
    if self.algorithm not in SUPERPIXEL_ALGORITHMS:
      raise ValueError(
          f"superpixel algorithm must be one of {SUPERPIXEL_ALGORITHMS}, got {self.algorithm!r}"
      )
    for key, value in self.parameters.items():
      if key != "algorithm" and not (value >= 0 if key == "sigma" else value > 0):
        raise ValueError(
            f"superpixel {key} must be {'>= 0' if key == 'sigma' else '> 0'}, got {value}"
        )

  @property
  def parameters(self) -> dict[str, Any]:
    if self.algorithm == "felzenszwalb":
      keys = ("scale", "sigma", "min_size")
    else:
      keys = ("n_segments", "compactness", "sigma")
    return {"algorithm": self.algorithm, **{k: getattr(self, k) for k in keys}}

  @property
  def package_versions(self) -> dict[str, str]:
    return package_versions("scikit-image")

  def __call__(self, image: np.ndarray) -> np.ndarray:
    import skimage.segmentation  # pylint: disable=g-import-not-at-top

    if self.algorithm == "felzenszwalb":
      labels = skimage.segmentation.felzenszwalb(
          image, scale=self.scale, sigma=self.sigma, min_size=self.min_size, channel_axis=-1
      )
      labels = labels + 1  # Felzenszwalb's labels start at 0 and cover every pixel.
    else:
      labels = skimage.segmentation.slic(
          image,
          n_segments=self.n_segments,
          compactness=self.compactness,
          sigma=self.sigma,
          start_label=1,
          channel_axis=-1,
      )
    return regions.renumber_by_area(labels)


# --------------------------------------------------------------------------------------------
# The export loop
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
  """What one ``export`` call did.

  Attributes:
    written: example ids whose map this call wrote.
    existing: example ids skipped because their map existed.
    bad: (example id, message) of each image skipped as unreadable (``skip_bad``).
    seconds: wall time of the written maps (read, method, write), summed.
  """

  written: list[str] = dataclasses.field(default_factory=list)
  existing: list[str] = dataclasses.field(default_factory=list)
  bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  seconds: float = 0.0


@contextlib.contextmanager
def _manifest_lock(out: epath.Path) -> Iterator[None]:
  """An exclusive advisory lock on a local ``out`` (module docstring); none in a bucket."""
  if fileio.is_url(out):
    yield
    return
  with open(os.fspath(out / ".manifest.lock"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _check_writable(out: epath.Path) -> None:
  """Creates ``out`` and writes then removes an empty probe file in it."""
  probe = out / f".writable.{uuid.uuid4().hex}"
  try:
    out.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    raise ExportError(f"output directory {out} is not writable ({e})") from e


def _names(folder: epath.Path) -> set[str]:
  """The names in ``folder`` (empty if it does not exist): one listing, not a check per map."""
  return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _start_manifest(out: epath.Path, images: Images, method: Method, overwrite: bool) -> None:
  """Checks ``out``'s manifest against this run (or writes the first one)."""
  with _manifest_lock(out):
    try:
      old = regions.read_manifest(out)
    except FileNotFoundError:
      old = None
    except ValueError as e:
      raise ExportError(f"{e}; not adding maps to it") from e
    if old is None:
      manifest = {"counts": {}, "timing": {}}
    else:
      changed = _differences(old, method)
      if changed and not overwrite:
        raise ExportError(
            f"{out} holds maps of method {old.get('method')!r} with other parameters "
            f"({'; '.join(changed)}); export to another directory, or pass --overwrite to "
            "recompute every map of this run under the new parameters"
        )
      old_dataset = old.get("source", {}).get("dataset")
      if old_dataset not in (None, images.source["dataset"]) and not overwrite:
        raise ExportError(
            f"{out} holds maps of dataset {old_dataset!r}, not {images.source['dataset']!r}; "
            "export to another directory (or pass --overwrite)"
        )
      fitting = _fitting_differences(old.get("source", {}), images.source)
      if fitting and not overwrite:
        raise ExportError(
            f"{out} holds maps of images fitted otherwise ({'; '.join(fitting)}): they are not "
            "the images this run exports; export to another directory (or pass --overwrite)"
        )
      manifest = dict(old)
      if changed:
        stale = sorted(set(old.get("counts", {})) - {images.split})
        if stale:
          logging.warning(
              "%s: split(s) %s still hold maps of the old parameters; export them again",
              out,
              stale,
          )
        manifest["counts"], manifest["timing"] = {}, {}
    manifest.update(
        method=method.name,
        parameters=method.parameters,
        package_versions=method.package_versions,
        source=images.source,
    )
    regions.write_manifest(out, manifest, overwrite=True)


# Manifest ``source`` keys saying how the images were fitted to the canvas (``source_images``).
FITTING_KEYS = ("geometry", "size", "archive")


def _fitting_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  return [
      f"{k}: {old.get(k)!r} vs {new.get(k)!r}"
      for k in FITTING_KEYS
      if (k in old or k in new) and old.get(k) != new.get(k)
  ]


def _differences(old: dict[str, Any], method: Method) -> list[str]:
  if old.get("method") != method.name:
    return [f"method {old.get('method')!r} vs {method.name!r}"]
  before, now = old.get("parameters", {}), method.parameters
  return [
      f"{k}: {before.get(k)!r} vs {now.get(k)!r}"
      for k in sorted(set(before) | set(now))
      if before.get(k) != now.get(k)
  ]


def _finish_manifest(
    out: epath.Path, split: str, report: Report, sizes: set[tuple[int, int]]
) -> None:
  """Merges this run's counts and timing into the manifest (under the lock, when local)."""
  with _manifest_lock(out):
    manifest = regions.read_manifest(out)
    maps = [n for n in _names(out / split) if n.endswith(".png") and not n.startswith(".")]
    manifest["counts"] = {**manifest.get("counts", {}), split: len(maps)}
    timing = manifest.get("timing", {})
    previous = timing.get(split, {"images": 0, "seconds": 0.0})
    timing[split] = {
        "images": previous["images"] + len(report.written),
        "seconds": round(previous["seconds"] + report.seconds, 3),
    }
    manifest["timing"] = timing
    images = sum(t["images"] for t in timing.values())
    seconds = sum(t["seconds"] for t in timing.values())
    manifest["seconds_per_image"] = round(seconds / images, 4) if images else None
    size = manifest.get("image_size", "unknown")
    if size is not None:  # None: sizes already known to differ.
      sizes = sizes | (set() if size == "unknown" else {tuple(size)})
      if sizes:
        manifest["image_size"] = list(next(iter(sizes))) if len(sizes) == 1 else None
    regions.write_manifest(out, manifest, overwrite=True)


def select(num_examples: int, limit: int | None, num_shards: int, shard_index: int) -> range:
  """The example indices of one shard: the first ``limit`` examples, every ``num_shards``-th from
  ``shard_index``.

  Raises:
    ExportError: ``num_shards`` < 1, ``shard_index`` outside [0, num_shards), ``limit`` < 1.
  """
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ExportError(
        f"--shard_index must be in [0, --num_shards) and --num_shards >= 1; got shard "
        f"{shard_index} of {num_shards}"
    )
  if limit is not None and limit < 1:
    raise ExportError(f"--limit must be >= 1, got {limit}")
  stop = num_examples if limit is None else min(limit, num_examples)
  return range(shard_index, stop, num_shards)


def export(
    images: Images,
    method: Method,
    out: str | os.PathLike,
    *,
    limit: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    overwrite: bool = False,
    skip_bad: bool = False,
    progress: bool = True,
) -> Report:
  """Exports the region map of each selected example of ``images`` to ``out`` (module docstring).

  Args:
    images: the split (``nyuv2_images``, ``tfds_images``, ``folder_images``, ``source_images``).
    method: the exporter (``Superpixels``, or the SAM method of ``tools/export_regions.py``).
    out: the region directory (docs/regions.md), a local path or a gs:// URL, created if missing.
    limit: export only the first ``limit`` examples of the split (before sharding).
    num_shards, shard_index: this process's share (``select``).
    overwrite: recompute existing maps, and accept a directory of other parameters.
    skip_bad: skip unreadable images (listed in the report) instead of stopping.
    progress: a tqdm bar (images/s, ETA) on stderr.

  Returns:
    A ``Report``.

  Raises:
    ExportError: ``out`` not writable; a manifest of an unknown format, another method,
      parameters, dataset or fitting (without ``overwrite``); bad shard flags; an unreadable image
      (``BadImageError``, without ``skip_bad``); a method's map of the wrong size.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  out = fileio.as_path(out)
  indices = select(len(images.example_ids), limit, num_shards, shard_index)
  _check_writable(out)
  _start_manifest(out, images, method, overwrite)
  report, todo = Report(), []
  names = _names(out / images.split)
  # What killed local writers left behind (``.{id}.png.*.tmp``; never a truncated map: the rename
  # did not happen), by example id.
  leftovers: dict[str, list[str]] = {}
  for name in names:
    if name.startswith(".") and name.endswith(".tmp") and ".png." in name:
      leftovers.setdefault(name[1 : name.rindex(".png.")], []).append(name)
  for index in indices:
    example_id = images.example_ids[index]
    if not overwrite and f"{example_id}.png" in names:
      report.existing.append(example_id)
    else:
      todo.append(index)
      for tmp in leftovers.get(example_id, ()):
        (out / images.split / tmp).unlink(missing_ok=True)
  sizes: set[tuple[int, int]] = set()
  for index in tqdm(todo, desc=f"{method.name} {images.split}", unit="img", disable=not progress):
    example_id = images.example_ids[index]
    start = time.perf_counter()
    try:
      image = images.read(index)
    except BadImageError as e:
      if not skip_bad:
        raise ExportError(f"{e} (pass --skip_bad to skip unreadable images)") from e
      report.bad.append((example_id, str(e)))
      continue
    ids = method(image)
    if ids.shape != image.shape[:2]:
      raise ExportError(
          f"{method.name} returned a {ids.shape} map for example {example_id!r} "
          f"({images.describe(index)}) of size {image.shape[:2]}"
      )
    regions.write_map(out, images.split, example_id, ids)
    report.seconds += time.perf_counter() - start
    report.written.append(example_id)
    sizes.add(tuple(int(d) for d in image.shape[:2]))
  _finish_manifest(out, images.split, report, sizes)
  return report
