"""Models: SegNet-MTL (MTAN / MTPSL), HRNet-MTL and their layers (see docs/metrics.md); the
features they expose to regularizers (``features``); ``create_model``, the network a config names.
"""

from mtjax.models.features import FEATURES, features
from mtjax.models.registry import create_model
from mtjax.models.segnet import SegNetMTL

__all__ = ["FEATURES", "SegNetMTL", "create_model", "features"]
