"""``build_model``: the one path from a preset or arch id to a seeded, freshly built model.

`srdistill train`, `srdistill distill` and the library all build through it, so what it reports
(a bad name) and what it must not hide (a plugin's own bug) matters everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import srdistill
from srdistill.errors import UsageError
from srdistill.train.config import TrainConfig
from srdistill.train.session import build_student

TINY = {"n_feats": 8, "n_resblocks": 1}


def test_a_bad_preset_name_is_one_line_naming_the_known_presets():
    with pytest.raises(UsageError) as caught:
        srdistill.build_model("edsr-tiny", 2)
    message = str(caught.value)
    assert "\n" not in message
    assert "'edsr-tiny'" in message and "edsr-lite" in message and "srdistill archs" in message


def test_arch_id_and_preset_resolve_to_their_hyperparameters():
    spec, preset = srdistill.resolve_arch("edsr-lite")
    assert (spec.id, preset) == ("edsr", "edsr-lite")
    lite = srdistill.build_model("edsr-lite", 2)
    assert lite.hparams == spec.resolve(preset="edsr-lite") and lite.preset == "edsr-lite"


def test_the_same_seed_builds_the_same_weights_train_and_distill_share_it():
    a = srdistill.build_model("edsr", 2, TINY, seed=3)
    b = srdistill.build_model("edsr", 2, TINY, seed=3)
    c = srdistill.build_model("edsr", 2, TINY, seed=4)
    assert all(torch.equal(a.net.state_dict()[k], b.net.state_dict()[k]) for k in a.net.state_dict())
    trained = next(name for name, p in a.net.named_parameters() if p.requires_grad)
    assert not torch.equal(a.net.get_parameter(trained), c.net.get_parameter(trained))
    student = build_student(TrainConfig(arch="edsr", arch_opt=TINY, scale=2, seed=3, data="-", steps=1))
    assert all(torch.equal(a.net.state_dict()[k], v) for k, v in student.net.state_dict().items())


def _fake_plugin(root, source: str) -> None:
    """An installed distribution registering arch ``buggynet`` (what importlib.metadata finds)."""
    info = root / "buggy_sr-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-sr\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[srdistill.archs]\nbuggynet = buggy_sr:SPEC\n")
    (root / "buggy_sr.py").write_text(textwrap.dedent(source))


PLUGIN = """
    from srdistill.archs.spec import ArchSpec

    def build(*, scale, width):
        raise RuntimeError("buggynet build bug: width table missing")

    SPEC = ArchSpec(
        id="buggynet", title="always fails to build", build=build, detect=lambda state: None,
        defaults={"width": 8}, presets={"buggynet": {}, "buggynet-small": {"width": 4}},
        blocks=lambda hp: (), block_channels=lambda hp: (), scales=(2,),
    )
"""


@pytest.mark.parametrize("name", ["buggynet", "buggynet-small"])
def test_an_exception_inside_a_plugin_build_is_not_hidden(tmp_path, name):
    _fake_plugin(tmp_path, PLUGIN)
    code = f"""
        import srdistill
        try:
            srdistill.build_model({name!r}, 2)
        except Exception as exc:
            print(type(exc).__name__, exc)
    """
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SRDISTILL_DISABLE_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RuntimeError buggynet build bug: width table missing"


def test_a_preset_of_a_plugin_that_fails_to_import_says_so_not_unknown(tmp_path):
    """The broken import is the plugin's bug: the error points at it (and the warning names the
    distribution) instead of calling a real preset name unknown."""
    _fake_plugin(tmp_path, "raise ImportError('buggy_sr needs the missing package fancy_ops')\n")
    code = """
        import warnings
        import srdistill
        warnings.simplefilter("ignore")
        try:
            srdistill.build_model("buggynet-small", 2)
        except Exception as exc:
            print(type(exc).__name__, exc)
    """
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SRDISTILL_DISABLE_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PluginError architecture 'buggynet' is registered but its plugin failed to import")
