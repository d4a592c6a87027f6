"""srdistill-spandrel: files built with spandrel's own classes are detected, run, distil and save
in a layout spandrel itself loads back. Checkpoints are random-weight small configurations."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import assert_one_line_error, invoke, run_cli
from safetensors.torch import save_file

from srdistill.archs.registry import ARCHS, get_arch
from srdistill.errors import MetadataConflictError, UnknownArchitectureError, UsageError
from srdistill.models import build_model, load_model, save_model

spandrel_plugin = pytest.importorskip("srdistill_spandrel", reason="srdistill-spandrel is not installed (pip install -e plugins/srdistill-spandrel)")
from srdistill_spandrel import loader  # noqa: E402
from srdistill_spandrel._import import available, spandrel  # noqa: E402

if "srvgg" not in ARCHS.ids():
    pytest.skip("srdistill-spandrel is installed but not registered (SRDISTILL_DISABLE_PLUGINS disables it)", allow_module_level=True)
if not available():
    pytest.skip("spandrel cannot be imported (pip install 'spandrel>=0.4')", allow_module_level=True)

DECLARED = ["hat", "dat", "srvgg", "omnisr", "spandrel-span", "plksr"]
# Families the generic `spandrel` arch loads (no declared blocks): spandrel's class, small config.
GENERIC = {"SwiftSRGAN": {"num_channels": 8, "num_blocks": 2, "upscale_factor": 2},
           "SAFMN": {"dim": 8, "n_blocks": 1, "upscaling_factor": 2}}


def _write(tmp_path, name: str, net: torch.nn.Module):
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("arch_id", DECLARED)
def test_declared_family_file_is_detected_and_upscales(arch_id, tmp_path):
    spec = get_arch(arch_id)
    net = spec.instantiate(2, spec.resolve(spec.small))
    path = _write(tmp_path, arch_id, net)
    info = invoke("inspect", path, "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["arch"] == arch_id and data["scale"] == 2 and data["metadata"]["identified_by"] == "detected"
    assert len(data["blocks"]) > 0
    claimed = data["loaded_by"]
    assert claimed["distribution"] == "srdistill-spandrel" and not claimed["builtin"]
    assert f"family {loader.find(net.state_dict()).family}" in claimed["via"] and "spandrel" in claimed["via"]
    from PIL import Image

    Image.new("RGB", (20, 18), (120, 60, 30)).save(tmp_path / "in.png")
    out = invoke("upscale", tmp_path / "in.png", "-m", path, "-o", tmp_path / "out.png", "--tile", "0")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "out.png").size == (40, 36)


@pytest.mark.parametrize("family", sorted(GENERIC))
def test_other_families_load_through_the_generic_arch(family, tmp_path):
    net = loader.model_class(family)(**GENERIC[family])
    model = load_model(_write(tmp_path, family, net))
    assert model.arch == "spandrel" and model.hparams["family"] == family and model.scale == 2
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net.eval()(x))


def test_builtins_keep_priority_over_spandrel(tmp_path):
    # spandrel's ESRGAN loads RRDBNet files too; the built-in rrdbnet claims them first.
    model = build_model("rrdbnet", 4, {"num_feat": 8, "num_block": 1})
    path = _write(tmp_path, "rrdb", model.net)
    assert load_model(path).arch == "rrdbnet"
    assert spandrel().MAIN_REGISTRY.load(dict(model.net.state_dict())).architecture.id == "ESRGAN"


def test_a_look_alike_a_builtin_cannot_build_goes_on_to_spandrel(tmp_path):
    """MMRealSR's keys pass the built-in rrdbnet's key rules, but an RRDBNet does not fit them: the
    file goes on to the plugin, which names the family and why it refuses it (spandrel runs it
    through its own call), instead of calling it a broken RRDBNet."""
    net = loader.model_class("MMRealSR")(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    path = _write(tmp_path, "mmrealsr", net)
    assert get_arch("rrdbnet").detect(net.state_dict()) is not None  # the look-alike
    with pytest.raises(UnknownArchitectureError) as err:
        load_model(path)
    assert "MMRealSR" in str(err.value) and str(path) in str(err.value) and "rrdbnet" not in str(err.value)


def test_saved_student_loads_back_and_spandrel_reads_it(tmp_path):
    student = build_model("srvgg-compact", 4, seed=0)
    path = save_model(student, tmp_path / "student.safetensors")
    back = load_model(path)
    assert back.arch == "srvgg" and back.hparams == student.hparams and back.metadata["identified_by"] == "metadata"
    from safetensors.torch import load_file

    desc = spandrel().ModelLoader().load_from_state_dict(load_file(str(path)))
    assert str(desc.architecture.id) == "Compact" and desc.scale == 4
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(desc.model.eval()(x), back(x), atol=1e-6)


def test_unloadable_file_gets_todays_clean_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    save_file({"mystery.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(UnknownArchitectureError, match="no installed architecture recognises"):
        load_model(path)
    assert_one_line_error(run_cli("inspect", path), "no installed architecture recognises")


def test_missing_spandrel_says_what_to_install(tmp_path):
    # A spandrel package that cannot be found, ahead of the real one on the path.
    fake = tmp_path / "nospandrel" / "spandrel"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'spandrel'\", name='spandrel')\n")
    net = loader.model_class("Compact")(num_feat=8, num_conv=2, upscale=2)
    path = _write(tmp_path, "compact", net)
    result = run_cli("inspect", path, env={"PYTHONPATH": str(tmp_path / "nospandrel")})
    assert_one_line_error(result, "spandrel", "pip install")


def test_distil_srvgg_teacher_into_smaller_srvgg(tmp_path):
    from cli_helpers import write_training_photos

    teacher = build_model("srvgg", 4, {"num_feat": 16, "num_conv": 4}, seed=1)
    tpath = save_model(teacher, tmp_path / "teacher.safetensors")
    photos = write_training_photos(tmp_path / "photos", ["a.png", "b.png"])
    out = tmp_path / "student.safetensors"
    result = run_cli("distill", "--teacher", tpath, "--student-arch", "srvgg-compact", "--data", photos,
                     "--steps", "2", "--patch-size", "16", "--batch-size", "2", "-o", out, timeout=300)
    assert result.returncode == 0, result.stderr
    assert load_model(out).arch == "srvgg"


def test_loader_forces_one_side(tmp_path):
    # An RRDBNet file both sides read: the built-in by default, spandrel's ESRGAN when asked.
    rrdb = build_model("rrdbnet", 4, {"num_feat": 8, "num_block": 1})
    rrdb_path = _write(tmp_path, "rrdb", rrdb.net)
    assert load_model(rrdb_path, loader="builtin").arch == "rrdbnet"
    forced = load_model(rrdb_path, loader="spandrel")
    assert forced.arch == "spandrel" and forced.hparams["family"] == "ESRGAN"
    assert forced.metadata["loaded_by"]["distribution"] == "srdistill-spandrel"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(forced(x), rrdb.net.eval()(x), atol=1e-6)
    # A file only spandrel reads, forced to the built-ins: the error names the choice and its way out.
    compact = _write(tmp_path, "compact", loader.model_class("Compact")(num_feat=8, num_conv=2, upscale=2))
    with pytest.raises(UnknownArchitectureError, match="loader='builtin'.*loader='auto'"):
        load_model(compact, loader="builtin")
    with pytest.raises(UsageError, match="choose one of auto, builtin, .*srdistill-spandrel"):
        load_model(compact, loader="no-such-plugin")
    # srdistill metadata naming a plugin arch, read with the built-ins only: refused, not misread.
    student = save_model(build_model("srvgg-compact", 2, seed=0), tmp_path / "student.safetensors")
    with pytest.raises(MetadataConflictError, match="srdistill-spandrel"):
        load_model(student, loader="builtin")


def test_loader_flag_on_the_command_line(tmp_path):
    rrdb_path = _write(tmp_path, "rrdb", build_model("rrdbnet", 2, {"num_feat": 8, "num_block": 1}).net)
    table = run_cli("inspect", rrdb_path, "--loader", "spandrel")
    assert table.returncode == 0, table.stderr
    assert "srdistill-spandrel" in table.stdout and "family ESRGAN" in table.stdout
    builtin = json.loads(invoke("inspect", rrdb_path, "--json").stdout)
    assert builtin["arch"] == "rrdbnet" and builtin["loaded_by"]["builtin"]
    # upscale loads its model inside the library: the flag reaches it there too.
    compact = _write(tmp_path, "compact", loader.model_class("Compact")(num_feat=8, num_conv=2, upscale=2))
    from PIL import Image

    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "in.png")
    refused = run_cli("upscale", tmp_path / "in.png", "-m", compact, "-o", tmp_path / "out.png", "--loader", "builtin")
    assert_one_line_error(refused, "--loader builtin", "--loader auto")
    assert not (tmp_path / "out.png").exists()


def test_archs_lists_spandrel_families_with_block_support():
    from srdistill.cli.archs import archs_report

    rows = {row["id"]: row for row in archs_report(bundled=[])}
    families = {f["family"]: f for f in rows["spandrel"]["families"]}
    assert len(families) >= 40
    assert families["HAT"]["arch"] == "hat" and families["HAT"]["blocks"]
    assert families["Compact"]["arch"] == "srvgg" and families["Compact"]["blocks"]
    assert families["SwiftSRGAN"]["arch"] == "spandrel" and not families["SwiftSRGAN"]["blocks"]
    assert all(row["families"] is None for arch_id, row in rows.items() if arch_id != "spandrel")


def test_restricted_families_are_refused_naming_the_licence(tmp_path, monkeypatch):
    extra = pytest.importorskip("spandrel_extra_arches", reason="spandrel_extra_arches is not installed")
    from spandrel_extra_arches.architectures.SRFormer import SRFormer

    net = SRFormer(embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2, upsampler="pixelshuffle", mlp_ratio=2.0)
    path = _write(tmp_path, "srformer", net)
    with pytest.raises(loader.RestrictedArchitectureError, match="SRFormer.*non-commercial or copyleft"):
        load_model(path)
    # Installed into spandrel's own registry (what spandrel_extra_arches.install() does), still refused.
    with_extra = spandrel().MAIN_REGISTRY.copy()
    with_extra.add(*extra.EXTRA_REGISTRY)
    monkeypatch.setattr(spandrel(), "MAIN_REGISTRY", with_extra)
    with pytest.raises(loader.RestrictedArchitectureError, match="SRFormer"):
        loader.find(dict(net.state_dict()))
    from srdistill_spandrel.generic import family_table

    srformer = next(row for row in family_table() if row["family"] == "SRFormer")
    assert srformer["arch"] is None and "non-commercial" in srformer["licence"]


def test_inputs_below_a_family_minimum_are_padded_as_spandrel_does(tmp_path):
    # SCUNet needs inputs of at least 40 pixels (its descriptor says so); srdistill runs it on smaller ones.
    net = loader.model_class("SCUNet")(config=[1] * 7, dim=64)
    model = load_model(_write(tmp_path, "scunet", net))
    assert model.arch == "spandrel" and model.hparams["family"] == "SCUNet"
    desc = spandrel().ModelLoader().load_from_state_dict(dict(net.state_dict())).eval()
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 3, 24, 20)
        assert torch.allclose(out.clamp(0, 1), desc(x), atol=1e-5)  # spandrel's call also clamps


def test_families_spandrel_runs_through_its_own_call_are_refused(tmp_path):
    # MixDehazeNet works in [-1, 1]; spandrel's call function shifts its output into [0, 1], so the
    # bare network srdistill would run is not the model.
    net = loader.model_class("MixDehazeNet")()
    with pytest.raises(loader.UnusableFamilyError, match="MixDehazeNet.*own call function"):
        load_model(_write(tmp_path, "mixdehaze", net))
