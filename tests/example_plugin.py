"""Whether the example architecture plugin (plugins/srdistill-rfdn) is registered.

scripts/setup.sh installs it, so CI and a developer's .venv have it; a bare ``pip install
srdistill`` or ``SRDISTILL_DISABLE_PLUGINS=all`` does not. Tests about that plugin in particular
skip then with this reason; registry-wide tests simply cover whatever is registered.
"""

from __future__ import annotations

import pytest

from srdistill.archs.registry import ARCHS

DISTRIBUTION = "srdistill-rfdn"
ARCH_ID = "rfdn"
REASON = (
    f"example plugin {DISTRIBUTION} is not registered: pip install -e plugins/{DISTRIBUTION} "
    "(scripts/setup.sh does) and leave SRDISTILL_DISABLE_PLUGINS unset"
)


def registered() -> bool:
    # Installed but switched off is as good as absent: nothing registers it.
    return ARCH_ID in ARCHS.ids()


needs_example_plugin = pytest.mark.skipif(not registered(), reason=REASON)
