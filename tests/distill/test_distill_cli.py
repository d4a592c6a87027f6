"""``srdistill distill``: bad inputs (one line, non-zero exit, no traceback), --dry-run, and a
real tiny run whose output is the plain student with the distillation recorded."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli, write_training_photos
from distill_helpers import small

from srdistill.io.model_files import read_model_file
from srdistill.models import file_sha256, load_model, save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    save_model(small("edsr"), root / "teacher.safetensors")
    write_training_photos(root / "photos", [f"im{i}.png" for i in range(3)])
    (root / "garbage.pth").write_bytes(b"not a checkpoint at all" * 10)
    from safetensors.torch import save_file

    save_file({"mystery.weight": torch.zeros(4, 4)}, str(root / "mystery.safetensors"))
    return root


def distill(files, *args, env=None):
    return run_cli("distill", "--teacher", files / "teacher.safetensors", *args, env=env)


def test_unloadable_teacher(files):
    r = run_cli("distill", "--teacher", files / "garbage.pth", "--student-arch", "edsr-lite", "--dry-run")
    assert_one_line_error(r, "garbage.pth")
    r = run_cli("distill", "--teacher", files / "missing.pth", "--student-arch", "edsr-lite", "--dry-run")
    assert_one_line_error(r, "missing.pth")


def test_teacher_of_an_unknown_architecture(files):
    r = run_cli("distill", "--teacher", files / "mystery.safetensors", "--student-arch", "edsr-lite", "--dry-run")
    assert_one_line_error(r, "no installed architecture recognises")


def test_scale_mismatch_is_refused_before_any_work(files):
    r = distill(files, "--student-arch", "edsr-lite", "--scale", "2", "--data", files / "nowhere", "--steps", "1")
    assert_one_line_error(r, "x4 model but --scale 2", code=2)


def test_unknown_student_preset(files):
    assert_one_line_error(distill(files, "--student-arch", "edsr-tiny", "--dry-run"), "unknown preset 'edsr-tiny'", code=2)


def test_boundaries_out_of_range(files):
    r = distill(files, "--student-arch", "edsr-lite", "--method", "mipkd", "--boundaries", "0:1,5:7", "--dry-run")
    assert_one_line_error(r, "teacher block index 5 is out of range", "0..1", code=2)


def test_k_larger_than_a_depth(files):
    r = distill(files, "--student-arch", "edsr-lite", "--method", "mipkd", "--K", "3", "--dry-run")
    assert_one_line_error(r, "--K 3 is larger than the depth of the teacher", code=2)


def test_unknown_method(files):
    r = distill(files, "--student-arch", "edsr-lite", "--method", "magic", "--dry-run")
    assert_one_line_error(r, "unknown distillation method 'magic'", "mipkd")


def test_method_option_of_the_wrong_type_or_name(files):
    r = distill(files, "--student-arch", "edsr-lite", "--method", "mipkd", "--method-opt", "latent=wide", "--dry-run")
    assert_one_line_error(r, "method mipkd option latent", "'wide' is not an integer", code=2)
    r = distill(files, "--student-arch", "edsr-lite", "--method", "mipkd", "--method-opt", "route=sideways", "--dry-run")
    assert_one_line_error(r, "route", "random, teacher, student", code=2)
    r = distill(files, "--student-arch", "edsr-lite", "--method", "logits", "--method-opt", "latent=3", "--dry-run")
    assert_one_line_error(r, "method logits has no option 'latent'", code=2)


FLAT_PLUGIN = """
import torch
from torch import nn
from srdistill.archs.spec import ArchSpec, Detection

class Flat(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.flat = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)
    def forward(self, x):
        return self.up(self.flat(x))

def detect(state):
    if "flat.weight" not in state:
        return None
    return Detection(scale=int(round((state["flat.weight"].shape[0] // 3) ** 0.5)), hparams={})

SPEC = ArchSpec(id="flatnet", title="a plugin with no body blocks", build=lambda *, scale: Flat(scale), detect=detect,
                defaults={}, presets={"flatnet": {}}, blocks=lambda hp: (), block_channels=lambda hp: (), scales=(2, 4))
"""


def test_plugin_arch_without_blocks(files, tmp_path):
    info = tmp_path / "flat_sr-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flat-sr\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[srdistill.archs]\nflatnet = flat_sr:SPEC\n")
    (tmp_path / "flat_sr.py").write_text(textwrap.dedent(FLAT_PLUGIN))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    r = distill(files, "--student-arch", "flatnet", "--method", "mipkd", "--dry-run", env=env)
    assert_one_line_error(r, "student architecture 'flatnet' declares no body blocks", "--method logits or scratch", code=2)
    # Methods that need no features still work with it.
    out = tmp_path / "flat.safetensors"
    r = distill(files, "--student-arch", "flatnet", "--method", "logits", "--data", files / "photos", "--steps", "2",
                "--batch-size", "2", "--patch-size", "16", "--run-dir", tmp_path / "run", "-o", out, env=env)
    assert r.returncode == 0, r.stderr
    assert read_model_file(out).metadata["srdistill.arch"] == "flatnet"


def test_dry_run_prints_the_matched_table(files):
    r = distill(files, "--student-arch", "swinir-s", "--student-opt", "depths=2,2,2,2", "--method", "mipkd-lite", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["method"] == "mipkd-lite" and plan["boundary_source"] == "auto"
    rows = plan["boundaries"]
    assert [(b["teacher_block"], b["student_block"]) for b in rows] == [("body.0", "layers.1"), ("body.1", "layers.3")]
    assert rows[0]["teacher_channels"] == 16 and rows[0]["student_channels"] == 60
    assert rows[0]["teacher_size"] == rows[0]["student_size"] == [48, 48]
    assert plan["mixer_parameters"] > 0 and plan["options"]["latent"] == 0  # 0: auto width
    text = distill(files, "--student-arch", "edsr-lite", "--method", "mipkd", "--dry-run")
    assert text.returncode == 0 and "body.7" in text.stdout and "mixer/adapter parameters" in text.stdout


def test_a_tiny_distillation_writes_the_plain_student_with_its_record(files, tmp_path):
    out = tmp_path / "student.safetensors"
    r = distill(files, "--student-arch", "edsr-lite", "--student-opt", "n_feats=8", "--method", "mipkd-lite", "--data", files / "photos",
                "--steps", "2", "--batch-size", "2", "--patch-size", "16", "--val-fraction", "0.3",
                "--run-dir", tmp_path / "run", "-o", out, "--method-opt", "l_feat=0.5", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["steps"] == 2 and summary["teacher_signal"] == "cache" and summary["validation"]["psnr_y"] > 0
    student = load_model(out)
    fresh = small("edsr", n_feats=8, n_resblocks=8)
    assert list(student.net.state_dict()) == list(fresh.net.state_dict())
    prov = student.metadata["provenance"]
    assert prov["method"] == "mipkd-lite" and prov["method_options"]["l_feat"] == 0.5 and prov["method_options"]["l_block"] == 0.1
    assert prov["teacher"]["arch"] == "edsr" and prov["teacher"]["sha256"] == file_sha256(files / "teacher.safetensors")
    assert prov["steps"] == 2 and prov["data"]["images"] == 2 and prov["validation"]["psnr_y"] > 0
    assert prov["boundaries"] == "0:3,1:7"
    # Resuming the run finds teacher, student and method in the run folder.
    settings = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert settings["method"] == "mipkd-lite" and settings["boundaries"] == "0:3,1:7"
    again = run_cli("distill", "--run-dir", tmp_path / "run", "--resume", "auto", "--steps", "3", "--overwrite", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == 3


def test_a_config_file_holds_the_whole_distillation(files, tmp_path):
    """Teacher, student, method and its options live in the TOML's [distill] table; flags win."""
    config = tmp_path / "run.toml"
    config.write_text(textwrap.dedent(f"""
        steps = 2
        patch_size = 16
        [distill]
        teacher = "{files / 'teacher.safetensors'}"
        student_arch = "edsr-lite"
        student_opt = {{ n_feats = 8 }}
        method = "mipkd"
        method_opt = {{ l_feat = 0.5, bpm_every = 2 }}
        K = 1
    """))
    r = run_cli("distill", "--config", config, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["method"] == "mipkd" and plan["options"]["l_feat"] == 0.5 and plan["options"]["bpm_every"] == 2
    assert len(plan["boundaries"]) == 1 and plan["student"]["hparams"]["n_feats"] == 8
    r = run_cli("distill", "--config", config, "--method-opt", "l_feat=0.25", "--K", "2", "--dry-run", "--json")
    plan = json.loads(r.stdout)
    # --method-opt overrides one key of the file's method_opt; the file's other keys stay.
    assert plan["options"]["l_feat"] == 0.25 and plan["options"]["bpm_every"] == 2 and len(plan["boundaries"]) == 2


def test_a_bad_distill_table_is_one_line(files, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[distill]\nteachr = "x.pth"\n')
    assert_one_line_error(run_cli("distill", "--config", config, "--dry-run"), "unknown key 'teachr' in [distill]", code=2)
    config.write_text('[distill]\nK = "two"\n')
    assert_one_line_error(run_cli("distill", "--config", config, "--dry-run"), "[distill] K = 'two' is not int", code=2)
    config.write_text(f'stepz = 3\n[distill]\nteacher = "{files / "teacher.safetensors"}"\nstudent_arch = "edsr-lite"\n')
    assert_one_line_error(run_cli("distill", "--config", config, "--dry-run"), "unknown key 'stepz'", code=2)
    # `train` has no [distill] table to read: the section is an unknown key there.
    config.write_text('steps = 1\n[distill]\nmethod = "logits"\n')
    assert_one_line_error(run_cli("train", "--config", config, "--arch", "edsr-lite"), "unknown key 'distill'", code=2)


def test_another_method_on_the_command_line_leaves_the_files_options_out(files, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'[distill]\nteacher = "{files / "teacher.safetensors"}"\nstudent_arch = "edsr-lite"\n'
                      'method = "mipkd"\nmethod_opt = {{ l_feat = 0.5 }}\n'.replace("{{", "{").replace("}}", "}"))
    r = run_cli("distill", "--config", config, "--method", "scratch", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "scratch"
    r = run_cli("distill", "--config", config, "--method", "logits", "--method-opt", "l_kd=2", "--dry-run", "--json")
    assert json.loads(r.stdout)["options"] == {"l_kd": 2.0}


def test_teacher_opt_sets_what_the_weights_cannot_tell(files):
    """``--teacher-opt`` reaches the teacher (EDSR's res_scale is invisible in its weights); a bad key
    is one line naming the flag and the known keys."""
    r = distill(files, "--student-arch", "edsr-lite", "--teacher-opt", "res_scale=0.25", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["teacher"]["hparams"]["res_scale"] == 0.25
    r = distill(files, "--student-arch", "edsr-lite", "--teacher-opt", "res_scal=0.25", "--dry-run")
    assert_one_line_error(r, "res_scal", "res_scale")
