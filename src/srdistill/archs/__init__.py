"""Architecture specs. One module per built-in family; each exposes ``SPEC``."""

# The spec module itself loads torch only when a network is built or counted, so `import
# srdistill.archs` (and reading the registry's ids) stays cheap.
from .spec import NCHW, TOKENS, ArchSpec, Detection, FeatureView, NCHWView, TokenView

__all__ = ["ArchSpec", "Detection", "FeatureView", "NCHW", "NCHWView", "TOKENS", "TokenView"]
