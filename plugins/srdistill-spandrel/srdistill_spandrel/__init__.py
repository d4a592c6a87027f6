"""srdistill-spandrel: every architecture spandrel can load, as srdistill architectures."""

from __future__ import annotations

from .families import DAT, HAT, OMNISR, PLKSR, SPAN, SRVGG
from .generic import SPEC as GENERIC

__all__ = ["DAT", "GENERIC", "HAT", "OMNISR", "PLKSR", "SPAN", "SRVGG"]
