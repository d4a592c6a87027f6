"""Bundled models and sample images.

Names (``teacher``, ``student-x2``, ...) resolve wherever a model file is asked for, the sample
crops ship with their attribution, and every bundled model that exists is the real thing: it loads,
records where it came from, and beats bicubic on Set5 by the margin the README promises.
CLI tests point ``srdistill.bundled.weights_dir`` at a folder of small real models of their own.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from shared_data import benchmark_set, shared_path

import srdistill
from srdistill.distill.registry import get_method
from srdistill import bundled
from srdistill.bundled import bundled_models, held_out_dir, recorded_set5_psnr, resolve_model_ref, samples_dir
from srdistill.data.folders import find_images
from srdistill.distill.api import plan_distillation
from srdistill.errors import ModelFileError, UsageError
from srdistill.evaluate import evaluate

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# Set5 PSNR-Y over bicubic that a bundled model must reach (dB): the README's table less about 0.1-0.2 dB.
MARGIN_DB = {("teacher", 4): 2.2, ("student", 4): 1.6, ("teacher", 3): 2.5, ("student", 3): 1.9,
             ("teacher", 2): 3.3, ("student", 2): 2.7}
ALLOWED_LICENCES = {"CC0-1.0", "CC-BY-4.0"}


@pytest.fixture
def bundle(tmp_path, monkeypatch) -> SimpleNamespace:
    """A weights folder with small real models: teacher x4, students x4 and x2 (fp16), and decoys."""
    folder = tmp_path / "weights"
    folder.mkdir()
    teacher = srdistill.build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 2})
    srdistill.save_model(teacher, folder / "teacher_x4.safetensors", provenance={
        "trained_by": "srdistill train", "steps": 3, "validation": {"psnr_y": 30.125, "images": 5},
        "config": {"arch": "edsr-baseline", "arch_opt": {"n_feats": 8, "n_resblocks": 2}, "scale": 4,
                   "val_data": "/somewhere/benchmarks/Set5", "val_crop": 0},
    })
    srdistill.save_model(srdistill.build_model("edsr", 4, {"n_feats": 4, "n_resblocks": 1}), folder / "student_x4.safetensors")
    student_x2 = srdistill.build_model("edsr", 2, {"n_feats": 4, "n_resblocks": 1})
    student_x2.net.half()  # shipped files may hold fp16 tensors
    srdistill.save_model(student_x2, folder / "student_x2.safetensors")
    for decoy in ("default_x4.safetensors", "teacher_x4.safetensors.tmp", "notes.txt"):
        (folder / decoy).write_bytes(b"not a model")
    monkeypatch.setattr(bundled, "weights_dir", lambda: folder)
    return SimpleNamespace(folder=folder, teacher_x4=folder / "teacher_x4.safetensors",
                           student_x4=folder / "student_x4.safetensors", student_x2=folder / "student_x2.safetensors")


@pytest.fixture
def empty_bundle(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(bundled, "weights_dir", lambda: tmp_path / "no-weights")
    return tmp_path / "no-weights"


def hr_set(folder: Path, count: int = 2) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):
        small = (rng.random((6, 7, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((32, 28), Image.BICUBIC).save(folder / f"img{i}.png")
    return folder


# -- names ----------------------------------------------------------------------------------------
def test_bundled_models_lists_only_the_weights_files_present(bundle):
    found = bundled_models()
    assert [(m.name, m.role, m.scale, m.path) for m in found] == [
        ("teacher-x4", "teacher", 4, bundle.teacher_x4),
        ("student-x2", "student", 2, bundle.student_x2),
        ("student-x4", "student", 4, bundle.student_x4),
    ]
    with pytest.raises(AttributeError):
        found[0].scale = 2  # frozen


def test_resolve_model_ref_names_and_scales(bundle):
    assert resolve_model_ref("teacher", None) == bundle.teacher_x4
    assert resolve_model_ref("teacher-x4", None) == bundle.teacher_x4
    assert resolve_model_ref("student", None) == bundle.student_x4
    assert resolve_model_ref("student", 2) == bundle.student_x2
    assert resolve_model_ref("student-x4", 2) == bundle.student_x4  # an explicit -xN wins over the scale
    # Not names: handed back for the caller to report as before.
    for ref in ("nosuch.safetensors", "edsr-lite", "teachers", "teacher_x4", "student-x"):
        assert resolve_model_ref(ref, None) == Path(ref)


def test_an_existing_path_wins_over_a_bundled_name(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("teacher").write_bytes(b"a file the user means")
    assert resolve_model_ref("teacher", 4) == Path("teacher")
    assert resolve_model_ref(Path("teacher"), None) == Path("teacher")
    assert resolve_model_ref(str(bundle.student_x2), 4) == bundle.student_x2


def test_a_bundled_name_without_its_file_says_what_is_bundled(empty_bundle):
    with pytest.raises(UsageError, match=r"teacher-x2: no bundled teacher-x2 model \(bundled: none in srdistill"):
        resolve_model_ref("teacher-x2", None)


def test_a_missing_bundled_scale_lists_the_bundled_models(bundle):
    with pytest.raises(UsageError, match=r"no bundled teacher-x3 model \(bundled: teacher-x4, student-x2, student-x4\)"):
        resolve_model_ref("teacher", 3)
    with pytest.raises(UsageError, match="no bundled teacher-x2"):
        resolve_model_ref("teacher-x2", 4)


def test_recorded_set5_psnr_only_from_a_whole_set5_validation_or_an_explicit_entry():
    val = {"validation": {"psnr_y": 29.5}}
    assert recorded_set5_psnr({"provenance": {**val, "config": {"val_data": "../b/Set5", "val_crop": 0}}}) == 29.5
    assert recorded_set5_psnr({"provenance": {**val, "config": {"val_data": "../b/Set14"}}}) is None
    assert recorded_set5_psnr({"provenance": {**val, "config": {"val_data": "../b/Set5", "val_crop": 96}}}) is None
    assert recorded_set5_psnr({"provenance": {**val, "config": {"val_fraction": 0.1}}}) is None
    assert recorded_set5_psnr({"provenance": {"benchmarks": {"Set5": {"psnr_y": 31.0}}}}) == 31.0
    assert recorded_set5_psnr({}) is None


# -- samples and packaging ------------------------------------------------------------------------
def attribution_sections(folder: Path) -> dict[str, str]:
    text = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    parts = re.split(r"^## (\S+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))}


def test_samples_are_six_small_crops_each_with_attribution():
    pngs = sorted(samples_dir().glob("*.png"))
    assert len(pngs) == 6
    assert sum(p.stat().st_size for p in pngs) < 1.2e6
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size == (256, 256) and im.mode == "RGB", png.name
    sections = attribution_sections(samples_dir())
    assert set(sections) == {p.name for p in pngs}
    for name, body in sections.items():
        fields = dict(re.findall(r"^- ([^:]+): (.+)$", body, flags=re.M))
        assert fields["Source photo"].startswith("`") and fields["Author / copyright"].strip(), name
        assert fields["Licence"].split()[0] in ALLOWED_LICENCES, (name, fields["Licence"])
        assert fields["Debian package"] == "`lomiri-wallpapers-16.04`", name
        assert re.fullmatch(r"downscaled by 2 from \d+x\d+ to \d+x\d+ \(bicubic, antialiased\), "
                            r"then cropped to 256x256 at x=\d+, y=\d+", fields["Changes"]), name


def test_held_out_crops_are_attributed_cc0_and_not_training_samples():
    pngs = sorted(held_out_dir().glob("*.png"))
    assert 3 <= len(pngs) <= 5
    for png in pngs:
        with Image.open(png) as im:
            # Sides divisible by 2, 3 and 4: every bundled scale evaluates them whole.
            assert im.format == "PNG" and im.mode == "RGB" and im.size[0] % 12 == 0 == im.size[1] % 12, png.name
    sections = attribution_sections(held_out_dir())
    assert set(sections) == {p.name for p in pngs}
    for name, body in sections.items():
        fields = dict(re.findall(r"^- ([^:]+): (.+)$", body, flags=re.M))
        assert fields["Author / copyright"].strip() and fields["Licence"].split()[0] in ALLOWED_LICENCES, name
        assert "lomiri-wallpapers-16.04" not in body, name  # the training photos' package
    # No held-out crop repeats a training sample, and training on samples_dir() cannot see them:
    # the dataset reads the top level of a folder only.
    training = pixels(samples_dir())
    for name, held in pixels(held_out_dir()).items():
        assert not any(held.shape == t.shape and np.array_equal(held, t) for t in training.values()), name
    assert find_images(samples_dir(), 4).pairs and all(p.hr.parent == samples_dir() for p in find_images(samples_dir(), 4).pairs)


def test_samples_regenerate_exactly_from_the_training_photos_and_their_licences():
    # --check re-reads each photo's licence from its Debian copyright file and refuses SA/GPL ones.
    photos = shared_path("data/train-photos/COPYRIGHT").parent
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make-samples.py"), "--check", "--photos", str(photos)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr


def test_held_out_crops_are_checked_against_every_training_photo(tmp_path):
    # The photos' own source is not at hand here; a folder of "held-out" photos that are in fact
    # training photos (renamed, re-encoded) must be refused before anything is compared or written.
    photos = shared_path("data/train-photos/COPYRIGHT").parent
    for name, training in (("chelsea.png", "mate_Aqua.jpg"), ("coffee.png", "Kite.jpg")):
        with Image.open(photos / training) as im:
            im.reduce(4).save(tmp_path / name)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make-samples.py"), "--held-out", "--check",
                             "--photos", str(tmp_path), "--train-photos", str(photos), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and "is a training photo (mate_Aqua.jpg" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_package_data_ships_weights_and_samples():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["srdistill"]
    package = REPO / "src" / "srdistill"
    shipped = {"weights/teacher_x4.safetensors", "weights/student_x2.safetensors"}
    shipped |= {str(p.relative_to(package)) for p in samples_dir().rglob("*") if p.is_file()}
    assert "samples/held-out/ATTRIBUTION.md" in shipped and "samples/held-out/cat.png" in shipped
    for name in shipped:
        assert any(fnmatch.fnmatch(name, g) for g in globs), name


# -- the commands ---------------------------------------------------------------------------------
def test_upscale_uses_the_bundled_student_for_the_scale(bundle, tmp_path):
    sample = samples_dir() / "dog.png"
    result = invoke("upscale", sample, "-s", 2, "-o", tmp_path / "out.png", "--json", "--threads", 1)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bundled"] == "student-x2" and report["model"] == str(bundle.student_x2)
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (512, 512)
    result = invoke("upscale", sample, "-o", tmp_path / "x4.png", "--json", "--threads", 1)
    assert json.loads(result.stdout)["bundled"] == "student-x4"
    result = invoke("upscale", sample, "--model", "teacher", "-o", tmp_path / "t.png", "--json", "--threads", 1)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bundled"] == "teacher-x4"
    table = invoke("upscale", sample, "-m", "student-x2", "-o", tmp_path / "table.png", "--threads", 1)
    assert table.returncode == 0 and "student-x2 (x2) -> x2" in table.stdout


def test_upscale_without_a_bundled_model_for_the_scale_is_one_clear_line(empty_bundle, tmp_path):
    sample = samples_dir() / "dog.png"
    result = invoke("upscale", sample, "-o", tmp_path / "out.png")
    assert_one_line_error(result, "no bundled x4 model", "bundled: none", "--model", code=2)
    result = invoke("upscale", sample, "-m", "teacher-x2", "-o", tmp_path / "out.png")
    assert_one_line_error(result, "--model teacher-x2: no bundled teacher-x2 model", code=2)
    result = invoke("upscale", sample, "-m", "nosuch", "-o", tmp_path / "out.png")
    assert_one_line_error(result, "--model nosuch: no such file", "not a preset name", code=1)
    assert not (tmp_path / "out.png").exists()


def test_eval_and_compare_take_bundled_names(bundle, tmp_path):
    data = hr_set(tmp_path / "tiny")
    result = invoke("eval", "-m", "teacher", "-m", "student", "--data", data, "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [r["method"] for r in rows] == ["teacher-x4", "student-x4"] and all(r["images"] == 2 for r in rows)
    result = invoke("compare", samples_dir() / "rocks.png", "--from-hr", "-m", "student-x2", "-m", bundle.student_x2,
                    "-o", tmp_path / "sheet.png", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    labels = [p["label"] for p in json.loads(result.stdout)["crops"][0]["panels"]]
    assert "student-x2" in labels and "student_x2" in labels  # the same file twice: the second gets its stem
    assert (tmp_path / "sheet.png").is_file()


def test_inspect_a_bundled_name(bundle):
    info = json.loads(invoke("inspect", "teacher-x4", "--json").stdout)
    assert info["bundled"] == "teacher-x4" and info["file"] == str(bundle.teacher_x4)
    assert info["arch"] == "edsr" and info["scale"] == 4 and info["hparams"]["n_resblocks"] == 2
    assert json.loads(invoke("inspect", "student", "--json").stdout)["bundled"] == "student-x4"
    x2 = json.loads(invoke("inspect", bundle.student_x2, "--json").stdout)
    assert x2["bundled"] == "student-x2" and x2["dtype"] == ["float16"]
    table = invoke("inspect", "teacher")
    assert table.returncode == 0 and "teacher-x4 (bundled:" in table.stdout
    assert_one_line_error(invoke("inspect", "teacher-x3"), "no bundled teacher-x3", "teacher-x4, student-x2, student-x4", code=2)


def test_archs_lists_bundled_models(bundle):
    rows = {row["id"]: row for row in json.loads(invoke("archs", "--json").stdout)}
    listed = {b["name"]: b for b in rows["edsr"]["bundled_models"]}
    assert list(listed) == ["teacher-x4", "student-x2", "student-x4"]
    assert all(not row["bundled_models"] for arch, row in rows.items() if arch != "edsr")
    teacher = listed["teacher-x4"]
    assert teacher["role"] == "teacher" and teacher["scale"] == 4 and teacher["file"] == str(bundle.teacher_x4)
    assert teacher["params"] == srdistill.load_model(bundle.teacher_x4).num_params
    assert teacher["set5_psnr_y"] == 30.125 and listed["student-x4"]["set5_psnr_y"] is None
    assert teacher["trained_as"] == "edsr-baseline (n_feats=8, n_resblocks=2)"
    table = invoke("archs").stdout
    assert "bundled models" in table and "30.12 dB" in table and "student-x2" in table


def test_archs_without_bundled_models_prints_one_table(empty_bundle):
    result = invoke("archs")
    assert result.returncode == 0 and "edsr-lite" in result.stdout and "bundled models" not in result.stdout
    assert all(row["bundled_models"] == [] for row in json.loads(invoke("archs", "--json").stdout))


def test_archs_describes_a_bundled_file_without_srdistill_metadata_by_loading_it(tmp_path, monkeypatch):
    """`archs` reads srdistill's own files from their header; a plain state dict is detected instead."""
    from safetensors.torch import save_file

    folder = tmp_path / "weights"
    folder.mkdir()
    net = srdistill.build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1}).net
    save_file(net.state_dict(), str(folder / "student_x2.safetensors"))
    srdistill.save_model(srdistill.build_model("edsr-lite", 4), folder / "student_x4.safetensors")
    monkeypatch.setattr(bundled, "weights_dir", lambda: folder)
    rows = {row["id"]: row for row in json.loads(invoke("archs", "--json").stdout)}
    listed = {b["name"]: b for b in rows["edsr"]["bundled_models"]}
    plain, own = listed["student-x2"], listed["student-x4"]
    assert plain["scale"] == 2 and plain["params"] == sum(p.numel() for p in net.parameters()) and plain["preset"] is None
    assert own["preset"] == "edsr-lite" and own["params"] == srdistill.load_model(own["file"]).num_params


def test_distill_resolves_bundled_teacher_and_student(bundle):
    plan = plan_distillation("teacher", "edsr-lite")
    assert plan.teacher_file == bundle.teacher_x4 and plan.provenance()["teacher"]["file"] == "teacher_x4.safetensors"
    plan = plan_distillation("teacher-x4", student_file="student")
    assert plan.student_file == bundle.student_x4 and plan.student.num_params < plan.teacher.num_params
    with pytest.raises(UsageError, match="teacher teacher: no bundled teacher-x2 model"):
        plan_distillation("teacher", "edsr-lite", scale=2)
    with pytest.raises(ModelFileError, match="no such file"):
        plan_distillation("my-teacher", "edsr-lite")


def test_distill_cli_dry_run_with_the_bundled_teacher(bundle):
    result = invoke("distill", "--teacher", "teacher", "--student-arch", "edsr-lite", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["teacher"]["file"] == str(bundle.teacher_x4)
    assert_one_line_error(invoke("distill", "--teacher", "teacher-x2", "--student-arch", "edsr-lite", "--dry-run"),
                          "--teacher teacher-x2: no bundled teacher-x2 model", code=2)


# -- the real bundled models ---------------------------------------------------------------------
def test_the_package_ships_a_teacher_and_a_student_at_x2_x3_and_x4():
    assert sorted(m.name for m in bundled_models()) == [f"{role}-x{s}" for role in ("student", "teacher") for s in (2, 3, 4)]


@pytest.mark.parametrize("model", bundled_models(), ids=lambda m: m.name)
def test_bundled_model_loads_and_records_its_provenance(model):
    loaded = srdistill.load_model(model.path)
    assert loaded.scale == model.scale
    prov = loaded.metadata.get("provenance") or {}
    assert prov.get("steps", 0) > 0, f"{model.name}: no training steps recorded"
    if model.role == "student":
        # The recorded method is a registered one and its options are that method's own.
        method = get_method(prov.get("method", ""))
        assert method.resolve(prov.get("method_options")) == prov.get("method_options"), model.name
        teacher = prov.get("teacher") or {}
        assert teacher.get("arch") and teacher.get("scale") == model.scale and teacher.get("sha256"), teacher
        partner = next(m for m in bundled_models() if m.role == "teacher" and m.scale == model.scale)
        bundled_teacher = srdistill.load_model(partner.path)
        assert loaded.num_params < bundled_teacher.num_params
        # Distilled from the shipped teacher (stored in float16 afterwards, so its own hash differs).
        assert teacher["sha256"] == bundled_teacher.metadata["provenance"]["bundled"]["source_sha256"]
    else:
        config = prov.get("config") or {}
        assert config.get("arch") and config.get("scale") == model.scale and config.get("data"), config


@pytest.mark.parametrize("model", bundled_models(), ids=lambda m: m.name)
def test_bundled_model_beats_bicubic_on_set5(model):
    set5 = benchmark_set("Set5")
    loaded = srdistill.load_model(model.path)
    results = evaluate({model.name: loaded}, set5, model.scale, device="cpu")
    gain = results.row("Set5", model.name).psnr - results.row("Set5", "bicubic").psnr
    needed = MARGIN_DB.get((model.role, model.scale), 0.0)
    recorded = srdistill.load_model(model.path).metadata["provenance"]["benchmarks"]["Set5"]
    assert abs(recorded["psnr_y"] - results.row("Set5", model.name).psnr) < 0.01, "the file's recorded score is not what it measures"
    assert gain > needed, f"{model.name}: {gain:+.2f} dB over bicubic on Set5, needs more than {needed:+.2f} dB"


@pytest.mark.slow
@pytest.mark.parametrize("set_name", ["Set14", "McMaster"])
@pytest.mark.parametrize("model", bundled_models(), ids=lambda m: m.name)
def test_bundled_model_beats_bicubic_by_its_recorded_margin(model, set_name):
    """The scores a file records (what `archs` and the README show) are what it measures, on every set."""
    data = benchmark_set(set_name)
    loaded = srdistill.load_model(model.path)
    results = evaluate({model.name: loaded}, data, model.scale, device="cpu")
    measured, bicubic = results.row(set_name, model.name).psnr, results.row(set_name, "bicubic").psnr
    recorded = loaded.metadata["provenance"]["benchmarks"][set_name]
    assert abs(recorded["psnr_y"] - measured) < 0.01 and abs(recorded["bicubic_psnr_y"] - bicubic) < 0.01
    assert measured > bicubic + 0.1, f"{model.name}: {measured - bicubic:+.2f} dB over bicubic on {set_name}"
