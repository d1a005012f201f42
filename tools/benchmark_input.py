"""Images/s of the tf.data training pipeline alone (no model): NYUv2 in the MTAN layout with
MTPSL's augmentation (RandomScaleCrop {1, 1.2, 1.5} and flips), and the generated procedural rooms.

    python tools/benchmark_input.py --dataset nyuv2 --data_dir ../shared/data/nyuv2_mini
    python tools/benchmark_input.py --dataset procedural_rooms [--data_dir ~/tensorflow_datasets]

The split is streamed epoch after epoch (a few real frames stand for the 795 of NYUv2: the cost
per image is the same). Prints the median images/s over ``--repeats`` runs of ``--batches``
batches after one warm-up run.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import default  # noqa: E402
from mtjax.data import label_settings, pipeline, sources  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="nyuv2", choices=("nyuv2", "procedural_rooms"))
  p.add_argument("--data_dir", default="")
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--batches", type=int, default=20)
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args()
  config = default.get_config()
  config.dataset.name = args.dataset
  config.dataset.data_dir = args.data_dir
  if args.dataset == "procedural_rooms":
    config.dataset.builder_config = "default"
  source = sources.create_source(config, "train")
  mask = label_settings.resolve_label_mask(
      "full",
      num_examples=source.num_examples,
      dataset_tasks=source.tasks,
      tasks=source.tasks,
      seed=0,
  )
  ds = pipeline.train_dataset(
      source,
      label_mask=mask,
      per_process_batch_size=args.batch_size,
      seed=0,
      scales=tuple(config.augment.scales),
      flip=config.augment.flip,
  )
  it = ds.as_numpy_iterator()
  rates = []
  for r in range(args.repeats + 1):
    t0 = time.perf_counter()
    for _ in range(args.batches):
      next(it)
    rate = args.batches * args.batch_size / (time.perf_counter() - t0)
    if r:  # The first run warms up tf.data.
      rates.append(rate)
      print(f"run {r}: {rate:.1f} images/s", flush=True)
  h, w = source.image_shape
  print(
      f"{args.dataset} {h}x{w}, batch {args.batch_size}, scales {tuple(config.augment.scales)}, "
      f"flip {config.augment.flip}: {np.median(rates):.1f} images/s (median of {args.repeats})"
  )


if __name__ == "__main__":
  main()
