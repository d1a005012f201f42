"""Input pipeline: dataset sources (``nyuv2``), partial-label settings, augmentation, tf.data streams."""
