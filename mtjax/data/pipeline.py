"""tf.data input pipelines: deterministic, resumable, per-host sharded train and eval streams.

Generic over a *source*: any object with ``num_examples`` (int), ``tasks`` (tuple of task names,
each a key of ``FIELDS``), ``image_shape`` ((H, W)) and ``load(i) -> dict`` of numpy arrays
(``image`` plus one array per task, dtypes and shapes as in ``FIELDS``), e.g.
``mtjax.data.nyuv2.NYUv2Split``. A source whose ``has_box`` is true also returns ``box`` int32 [4]
(``mtjax.data.geometry``), batched as [B, 4]. ``load`` runs in tf.data's parallel threads (via
``tf.numpy_function``), so it must be thread-safe. Batches follow the batch dict of SPEC.md /
ARCHITECTURE.md. Resuming is by ``start_step``, not by tf.data iterator checkpoints (which cannot
serialise ``numpy_function``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mtjax import tasks as tasks_lib
from mtjax.data import augment as augment_lib
from mtjax.data import regions as regions_lib

# key -> (dtype, trailing dims after [H, W], fill value marking "invalid" in padding examples) of
# the maps that are not tasks; a task's come from its record (``field``).
FIELDS = {
    "image": (tf.float32, (3,), 0),
    "regions": (tf.int32, (), -1),
}
# key -> (dtype, full shape, fill of padding examples) of per-example values that are not maps:
# ``box`` (top, left, height, width) of the native ground truth on the canvas, from the sources
# that fit variable-size images to one canvas (``mtjax.data.geometry``).
EXAMPLE_FIELDS = {
    "box": (tf.int32, (4,), 0),
}


def field(key: str) -> tuple[tf.DType, tuple[int, ...], float]:
  """(dtype, trailing dims, invalid fill) of ``key``: ``FIELDS`` or a registered task's record.

  Raises:
    ValueError: neither.
  """
  if key in FIELDS:
    return FIELDS[key]
  if key in EXAMPLE_FIELDS:
    return EXAMPLE_FIELDS[key]
  if key in tasks_lib.names():
    task = tasks_lib.get_task(key)
    return tf.as_dtype(task.gt_dtype), task.gt_shape, task.ignore
  raise ValueError(
      f"{key!r} is neither a task ({tasks_lib.names()}) nor one of {(*FIELDS, *EXAMPLE_FIELDS)}"
  )
# Purposes folded into the user seed so that the epoch permutations and augmentations are independent.
_PERMUTATION, _AUGMENTATION = 0, 1


def _keys(source, *extra: str) -> tuple[str, ...]:
  boxed = ("box",) if getattr(source, "has_box", False) else ()
  keys = ("image", *source.tasks, *boxed, *extra)
  unknown = [
      k for k in keys if k not in FIELDS and k not in EXAMPLE_FIELDS and k not in tasks_lib.names()
  ]
  if unknown:
    raise ValueError(
        f"source tasks {tuple(source.tasks)} include {unknown}; the pipeline knows "
        f"{tuple(FIELDS)} and the tasks {tasks_lib.names()}."
    )
  return keys


def _check_hosts(per_process_batch_size: int, process_index: int, process_count: int) -> None:
  if per_process_batch_size < 1:
    raise ValueError(f"per_process_batch_size must be >= 1, got {per_process_batch_size}.")
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"process_index must be in [0, process_count={process_count}), got {process_index}."
    )


def _derive_seed(seed: tf.Tensor, *data: tf.Tensor) -> tf.Tensor:
  """int64 [2] stateless seed folded with each of ``data`` in turn."""
  for d in data:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int64))
  return seed


def _load_fn(source, keys: tuple[str, ...]):
  """tf function: int32 [] index -> dict of tensors; index -1 gives an invalid padding example."""
  height, width = source.image_shape
  fields = {k: field(k) for k in keys}
  shapes = {
      k: fields[k][1] if k in EXAMPLE_FIELDS else (height, width, *fields[k][1]) for k in keys
  }
  padding = [np.full(shapes[k], fields[k][2], fields[k][0].as_numpy_dtype) for k in keys]

  def load_numpy(index):
    if index < 0:
      return padding
    example = source.load(int(index))
    return [example[k] for k in keys]

  def load(index):
    arrays = tf.numpy_function(load_numpy, [index], [fields[k][0] for k in keys], stateful=False)
    return {k: tf.ensure_shape(a, shapes[k]) for k, a in zip(keys, arrays)}

  return load


def _regions_fn(spec: regions_lib.RegionSpec, image_shape: tuple[int, int]):
  """tf function: augmented example -> int32 [H, W] relabelled regions (``regions`` module)."""
  height, width = image_shape

  def relabel(ids):
    if spec.relabel == "none":
      return regions_lib.keep_ids(ids, spec.max_regions)
    return regions_lib.relabel_by_area(ids, spec.max_regions, spec.min_pixels, spec.loss_stride)

  def semantic(semseg):
    return relabel(regions_lib.semantic_regions(semseg, spec.split_components))

  patch = tf.constant(regions_lib.patch_regions(height, width, spec.patch_size))

  def regions(example):
    if spec.source == "semantic_gt":
      ids = tf.numpy_function(semantic, [example["semseg"]], tf.int32, stateful=False)
    else:
      raw = patch if spec.source == "patch" else example["regions"]
      ids = tf.numpy_function(relabel, [raw], tf.int32, stateful=False)
    return tf.ensure_shape(ids, (height, width))

  return regions


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1
  return options


def train_dataset(
    source,
    *,
    label_mask: np.ndarray,
    per_process_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    scales: Sequence[float] = augment_lib.DEFAULT_SCALES,
    flip: bool = True,
    augmentation: str = "scale_crop",
    scale_range: tuple[float, float] = augment_lib.DEFAULT_SCALE_RANGE,
    photometric: bool = False,
    regions: regions_lib.RegionSpec | None = None,
    views: int = 1,
    second_view: str = "independent",
    tasks: Sequence[tasks_lib.Task] | None = None,
) -> tf.data.Dataset:
  """Infinite, deterministic, resumable training stream of this host's batches.

  The global example stream is the concatenation of epochs e = 0, 1, ..., each a permutation of
  ``range(N)`` from ``stateless_shuffle`` seeded by (seed, e). Global step k consumes stream
  positions [k G, (k + 1) G), G = per_process_batch_size * process_count; host p takes the
  positions congruent to p mod process_count (``shard``), so the hosts' batches at step k are
  disjoint and their union is the same set of examples for every process_count. Resuming at
  ``start_step`` jumps to epoch floor(start_step G / N) and skips the rest of the offset within
  that epoch before sharding and before any file is read, so it costs at most one epoch of
  index bookkeeping and yields exactly batches start_step, start_step + 1, ... of a fresh run.
  Each example is loaded with ``source.load`` and augmented (``augment.augment``) with a
  stateless seed derived from (seed, epoch, index). Streams depend only on the arguments, for a
  given TensorFlow version (``stateless_shuffle`` may change across versions).

  Args:
    source: see the module docstring.
    label_mask: float [N, T] 0/1, row i for example i (``label_settings.resolve_label_mask``).
    per_process_batch_size: B, examples per host batch.
    seed: integer seed of the epoch order and the augmentation.
    start_step: number of global steps already consumed.
    process_index, process_count: this host and the number of hosts.
    scales, flip, augmentation, scale_range, photometric: augmentation (``augment.augment``'s
      ``scales``, ``flip``, ``name``, ``scale_range``, ``photometric``); ``scale_crop`` with
      ``scales=(1.0,), flip=False`` disables it.
    regions: what to attach as ``regions`` (``mtjax.data.regions``); None or source ``"none"``:
      nothing. Maps of the stored example (instance ids, exported files) are augmented with the
      labels (nearest); a patch grid or the semantic regions are made on the augmented example;
      then ``relabel_by_area``.
    views: 2 adds a second, independently augmented view of each example (MTPSL's two views:
      another scale-crop and flip of the same stored example, seeded by (seed, epoch, index,
      view)) under ``view2/<key>`` for the image, the ground truths and ``regions``; the first
      view is the same as with ``views=1``.
    second_view: ``independent`` (above) or ``of_first``: the second view augments the first
      view's augmented example instead of the stored one (MTPSL, RDC's release: a crop of the
      crop; ``augment.SECOND_VIEWS``).
    tasks: the task records whose augmentation rules apply (``augment.augment``; a source task
      not among them takes its registered default record).

  Returns:
    tf.data.Dataset of dicts: ``image`` float32 [B, H, W, 3]; one entry per source task
    (``semseg`` int32 [B, H, W], ``depth`` float32 [B, H, W, 1], ``normal`` float32
    [B, H, W, 3]); ``label_mask`` float32 [B, T]; ``index`` int32 [B]; ``valid`` float32 [B] (1);
    with ``regions`` enabled, ``regions`` int32 [B, H, W] in {−1, 0, ..., max_regions − 1};
    with ``views=2`` also ``view2/image``, ``view2/<task>`` (and ``view2/regions``).

  Raises:
    ValueError: ``label_mask`` not 2-D or its row count != N (both named); B < 1;
      process_index outside [0, process_count); start_step < 0; a source task the pipeline does
      not know; bad ``scales``; a region source the dataset cannot serve (``semantic_gt``
      without ``semseg``; the errors of ``regions.WithRegionMaps``).
    FileNotFoundError: a missing region manifest or map.
  """
  _check_hosts(per_process_batch_size, process_index, process_count)
  if views not in (1, 2):
    raise ValueError(f"views must be 1 or 2, got {views}.")
  if second_view not in augment_lib.SECOND_VIEWS:
    raise ValueError(
        f"config.augment.second_view={second_view!r}: expected one of {augment_lib.SECOND_VIEWS}"
    )
  spec = regions or regions_lib.RegionSpec()
  if spec.before_augmentation:
    source = regions_lib.WithRegionMaps(source, spec)
  if spec.source == "semantic_gt" and "semseg" not in source.tasks:
    raise ValueError(
        f"config.regions.source='semantic_gt' needs semseg; the tasks are {source.tasks}"
    )
  keys = _keys(source, *(("regions",) if spec.before_augmentation else ()))
  n = source.num_examples
  label_mask = np.asarray(label_mask, np.float32)
  if label_mask.ndim != 2 or label_mask.shape[0] != n:
    raise ValueError(
        f"label_mask has shape {label_mask.shape}; expected [{n}, T] for the {n} source examples."
    )
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}.")
  base_seed = tf.constant([0, seed], tf.int64)
  mask = tf.constant(label_mask)
  load = _load_fn(source, keys)
  attach_regions = _regions_fn(spec, source.image_shape) if spec.enabled else None

  def epoch_stream(epoch):
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(n), _derive_seed(base_seed, _PERMUTATION, epoch)
    )
    return tf.data.Dataset.from_tensor_slices({"epoch": tf.fill([n], epoch), "index": perm})

  def make_view(stored, epoch, index, view):
    """(the augmented example as stored, with its regions relabelled)."""
    seed = _derive_seed(base_seed, _AUGMENTATION, epoch, index)
    if view:
      seed = _derive_seed(seed, view)
    augmented = augment_lib.augment(
        stored,
        seed,
        name=augmentation,
        scales=scales,
        flip=flip,
        scale_range=scale_range,
        photometric=photometric,
        tasks=tasks,
    )
    example = dict(augmented)
    if attach_regions is not None:
      example["regions"] = attach_regions(augmented)
    return augmented, example

  def make_example(element):
    index = element["index"]
    stored = load(index)
    first, example = make_view(stored, element["epoch"], index, 0)
    if views == 2:
      _, second = make_view(
          first if second_view == "of_first" else stored, element["epoch"], index, 1
      )
      example.update({f"view2/{k}": v for k, v in second.items()})
    return {
        **example,
        "label_mask": tf.gather(mask, index),
        "index": index,
        "valid": tf.constant(1.0),
    }

  first_epoch, offset = divmod(start_step * per_process_batch_size * process_count, n)
  return (
      tf.data.Dataset.counter(first_epoch)
      .flat_map(epoch_stream)
      .skip(offset)
      .shard(process_count, process_index)
      .map(make_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      .batch(per_process_batch_size, drop_remainder=True)
      .prefetch(tf.data.AUTOTUNE)
      .with_options(_options())
  )


def eval_dataset(
    source,
    *,
    per_process_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    tasks: Sequence[str] | None = None,
) -> tf.data.Dataset:
  """Finite evaluation stream that sees every example of the split exactly once, unaugmented.

  The index list 0..N-1 is padded with -1 to M = ceil(N / G) G, G = per_process_batch_size *
  process_count, and sharded (host p takes positions congruent to p mod process_count), so every
  host yields the same M / G batches. Padding examples have ``index`` -1, ``valid`` 0 and
  invalid ground truth (image 0, semseg -1, depth 0, normal 0); metrics must weight by ``valid``
  (or rely on the invalid ground truth).

  Args:
    source: see the module docstring.
    per_process_batch_size: B, examples per host batch.
    process_index, process_count: this host and the number of hosts.
    tasks: tasks of ``label_mask`` (config order); default ``source.tasks``.

  Returns:
    tf.data.Dataset of dicts with the keys and shapes of ``train_dataset``; ``label_mask`` is
    float32 [B, len(tasks)] of ones.

  Raises:
    ValueError: B < 1; process_index outside [0, process_count); a task not in
      ``source.tasks``; a source task the pipeline does not know.
  """
  _check_hosts(per_process_batch_size, process_index, process_count)
  keys = _keys(source)
  tasks = tuple(source.tasks if tasks is None else tasks)
  if not set(tasks) <= set(source.tasks):
    raise ValueError(f"tasks {tasks} must be a subset of the source tasks {tuple(source.tasks)}.")
  n = source.num_examples
  total = -(-n // (per_process_batch_size * process_count)) * per_process_batch_size * process_count
  load = _load_fn(source, keys)

  def make_example(position):
    index = tf.where(position < n, tf.cast(position, tf.int32), -1)
    return {
        **load(index),
        "label_mask": tf.ones([len(tasks)], tf.float32),
        "index": index,
        "valid": tf.cast(index >= 0, tf.float32),
    }

  return (
      tf.data.Dataset.range(total)
      .shard(process_count, process_index)
      .map(make_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      .batch(per_process_batch_size, drop_remainder=True)
      .prefetch(tf.data.AUTOTUNE)
      .with_options(_options())
  )
