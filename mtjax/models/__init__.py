"""Models: SegNet-MTL (MTAN / MTPSL) and its layers (see DATA_AND_METRICS.md); the features they
expose to regularizers (``features``)."""

from mtjax.models.features import FEATURES, features
from mtjax.models.segnet import SegNetMTL

__all__ = ["FEATURES", "SegNetMTL", "features"]
