"""Architecture specs. One module per built-in family; each exposes ``SPEC``."""

from .spec import NCHW, TOKENS, ArchSpec, Detection, FeatureView, NCHWView, TokenView

__all__ = ["ArchSpec", "Detection", "FeatureView", "NCHW", "NCHWView", "TOKENS", "TokenView"]
