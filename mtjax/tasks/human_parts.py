"""``human_parts``: PASCAL-Part human parts, 7 classes including background.

Ground truth int32 [B, H, W]: 0 background, 1 head, 2 torso, 3 upper arms, 4 lower arms (and
hands), 5 upper legs, 6 lower legs (and feet); −1 = ignore (docs/datasets.md).
Loss: cross-entropy with ignore, as semseg. Metric: mIoU pooled over the images the PASCAL
multi-task evaluators count (``mtjax.metrics.parts_state``: images without a person are skipped),
every class counting (an absent class scores 0).
"""

from __future__ import annotations

import functools

from mtjax import metrics
from mtjax.tasks import base, semseg

NUM_PARTS = 7


@functools.cache
def human_parts(*, num_classes: int | None = None, num_parts: int = NUM_PARTS) -> base.Task:
  """The ``human_parts`` record: ``num_parts`` classes (PASCAL-Part's 6 parts + background).

  ``num_classes`` (the dataset's semantic classes) is unused: the parts have their own count.
  """
  del num_classes
  return semseg.class_task(
      "human_parts",
      num_parts,
      metric_state=metrics.parts_state,
      finalize=metrics.finalize_parts,
      directions={"miou": True},
  )


base.register("human_parts", human_parts)
