"""Entry-point discovery: lazy imports, broken and duplicate plugins, the disable switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest
from cli_helpers import run_cli

# The architectures srdistill itself registers (its own entry points): what is left with every
# third-party plugin disabled, however many built-ins there come to be.
BUILTIN_ARCHS = {ep.name for ep in metadata.distribution("srdistill").entry_points if ep.group == "srdistill.archs"}


def fake_distribution(root, name: str, entry_points: dict[str, str], module: str, source: str):
    """A minimal installed distribution (dist-info + module) that importlib.metadata finds."""
    info = root / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[srdistill.archs]\n{lines}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


def python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120,
    )


def test_get_arch_and_find_preset_import_only_what_they_need():
    result = python(
        """
        import sys
        from srdistill.archs.registry import get_arch, find_preset
        spec, name = find_preset("edsr-lite")
        assert spec.id == "edsr" and name == "edsr-lite"
        get_arch("rcan")
        loaded = sorted(m for m in sys.modules if m.startswith("srdistill.archs.") and not m.startswith("srdistill.archs._"))
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['srdistill.archs.edsr', 'srdistill.archs.rcan', 'srdistill.archs.registry', 'srdistill.archs.spec']"


@pytest.fixture
def plugin_dir(tmp_path):
    fake_distribution(
        tmp_path, "broken-sr", {"brokennet": "broken_sr:SPEC"}, "broken_sr",
        "raise ImportError('needs the missing package fancy_cuda_ops')",
    )
    fake_distribution(
        tmp_path / "dup", "shadow-sr", {"edsr": "shadow_sr:SPEC"}, "shadow_sr",
        "raise RuntimeError('must never be imported: the built-in edsr wins')",
    )
    return tmp_path


def test_broken_and_duplicate_plugins_warn_once_and_the_rest_works(plugin_dir):
    # Plugins on, whatever the caller's environment says: these are the plugins under test.
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_dir), str(plugin_dir / "dup")]), "SRDISTILL_DISABLE_PLUGINS": ""}
    result = run_cli("archs", "--json", env=env)
    assert result.returncode == 0, result.stderr
    ids = [row["id"] for row in json.loads(result.stdout)]
    assert BUILTIN_ARCHS <= set(ids) and "brokennet" not in ids
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2, result.stderr
    broken = next(w for w in warnings if "brokennet" in w)
    assert "broken-sr" in broken and "fancy_cuda_ops" in broken
    dup = next(w for w in warnings if "shadow-sr" in w)
    assert "'edsr'" in dup and "already registered by 'srdistill'" in dup
    assert "Traceback" not in result.stderr


def test_disable_switch_hides_third_party_plugins(plugin_dir):
    env = {"PYTHONPATH": str(plugin_dir), "SRDISTILL_DISABLE_PLUGINS": "1"}
    result = run_cli("archs", "--json", env=env)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    rows = json.loads(result.stdout)
    assert all(row["builtin"] for row in rows) and {row["id"] for row in rows} == BUILTIN_ARCHS
    # Naming one distribution disables just that one.
    named = run_cli("archs", "--json", env={"PYTHONPATH": str(plugin_dir), "SRDISTILL_DISABLE_PLUGINS": "broken-sr"})
    assert named.returncode == 0 and named.stderr.strip() == "", named.stderr


def test_unknown_preset_lists_known_ones():
    from srdistill.errors import UsageError
    from srdistill.archs.registry import find_preset

    with pytest.raises(UsageError, match="edsr-lite"):
        find_preset("edsr-tiny")
