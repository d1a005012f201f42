"""mtjax: multi-task dense prediction from partially annotated data, in JAX/Flax."""

__version__ = "0.1.0"
