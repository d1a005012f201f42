"""Shared test setup: keep TensorFlow (tf.data only) off accelerators and quiet."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
