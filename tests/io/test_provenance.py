"""Model files are made to be shared: their metadata names no place on the machine that made them.

Data folders are recorded by name, image count and content hash, model files by name and SHA-256;
the absolute paths stay in the run folder. Checked on the bundled files and on the output of real
tiny ``train`` and ``distill`` runs.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from cli_helpers import run_cli, write_training_photos
from safetensors.torch import load_file

from srdistill import bundled
from srdistill.bundled import bundled_models
from srdistill.data.folders import find_images
from srdistill.distill.api import distill
from srdistill.io.model_files import replace_metadata
from srdistill.models import build_model, file_sha256, load_model, save_model
from srdistill.provenance import dataset_fingerprint, local_paths, portable_provenance
from srdistill.train import TrainConfig, train

TINY_STUDENT = {"n_feats": 8, "n_resblocks": 1}


def header(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def assert_shareable(path, *private: str) -> dict:
    """No metadata value of ``path`` (decoded or raw) names a local path or any of ``private``."""
    meta = header(path)[0]["__metadata__"]
    decoded = {k: json.loads(v) if v.startswith(("{", "[")) else v for k, v in meta.items()}
    assert local_paths(decoded) == [] and local_paths(meta) == []
    text = json.dumps(meta)
    for word in private:
        assert word not in text, word
    return decoded


# -- the detector itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "/work/kd/t2/teacher_x4.safetensors", "/home/ann/photos", "data: /srv/x/y.png", "~/models/edsr.pth",
    "~ann/x", "C:\\Users\\ann\\model.pth", "D:/data/photos", "\\\\server\\share\\model.pth",
])
def test_local_paths_are_found(text):
    assert local_paths({"outer": [{"inner": text}]}), text


@pytest.mark.parametrize("text", [
    "teacher_x4.safetensors", "LR_bicubic/X4", "0-1", "/", "/x", "generated (MATLAB bicubic)",
    "scripts/train-default-models.sh", "https://example.org/a/b", "7:3,15:7", "../HR_LR/X4",
])
def test_names_and_relative_paths_are_not_local_paths(text):
    assert local_paths({"k": text}) == [], text


# -- fingerprints ------------------------------------------------------------------------------------
def test_a_data_fingerprint_follows_the_content_not_the_location(tmp_path):
    first = write_training_photos(tmp_path / "a" / "photos", ["x.png", "y.png"])
    moved = shutil.copytree(first, tmp_path / "b" / "photos")
    print_a = dataset_fingerprint(first, find_images(first, 2).pairs)
    assert print_a == dataset_fingerprint(moved, find_images(moved, 2).pairs)
    assert print_a["name"] == "photos" and print_a["images"] == 2 and len(print_a["sha256"]) == 64
    (moved / "y.png").rename(moved / "z.png")  # same bytes, another name
    renamed = dataset_fingerprint(moved, find_images(moved, 2).pairs)
    write_training_photos(moved, ["z.png"])
    (moved / "z.png").write_bytes((moved / "z.png").read_bytes() + b"\0")  # same name, other bytes
    edited = dataset_fingerprint(moved, find_images(moved, 2).pairs)
    assert len({print_a["sha256"], renamed["sha256"], edited["sha256"]}) == 3


def test_replace_metadata_keeps_every_tensor_byte(tmp_path):
    path = tmp_path / "m.safetensors"
    model = build_model("edsr", 2, TINY_STUDENT)
    model.net.half()
    save_model(model, path, provenance={"config": {"data": "/home/ann/photos"}})
    before_header, before_data = header(path)
    replace_metadata(path, {**before_header["__metadata__"], "srdistill.provenance": json.dumps({"note": "x" * 13})})
    after_header, after_data = header(path)
    assert after_data == before_data
    assert {k: v for k, v in after_header.items() if k != "__metadata__"} == {
        k: v for k, v in before_header.items() if k != "__metadata__"}
    assert load_model(path).metadata["provenance"] == {"note": "x" * 13}
    assert all(torch.equal(a, model.net.state_dict()[k].cpu()) for k, a in load_file(str(path)).items())


def test_portable_provenance_maps_an_old_record():
    old = {
        "config": {"data": "/work/shared/data/train-photos", "val_data": "/work/shared/data/benchmarks/Set5",
                   "init": "/work/kd/teacher.safetensors", "output": "/work/kd/t.safetensors", "run_dir": "/work/kd/x4",
                   "arch": "edsr-baseline", "scale": 4},
        "data": {"data": "/work/shared/data/train-photos", "images": 38, "lr_source": "generated (MATLAB bicubic)"},
        "teacher": {"file": "teacher_x4.safetensors", "sha256": "ab"},
    }
    known = {"train-photos": {"name": "train-photos", "images": 38, "sha256": "cd"}}
    new = portable_provenance(old, datasets=known)
    assert new["config"] == {"data": "train-photos", "val_data": "Set5", "init": "teacher.safetensors",
                             "output": "t.safetensors", "run_dir": "x4", "arch": "edsr-baseline", "scale": 4}
    assert new["data"]["data"] == known["train-photos"]
    assert new["data"]["validation_data"] == {"name": "Set5", "sha256": None}  # not at hand: unknown, not a path
    assert new["init"] == {"file": "teacher.safetensors", "sha256": None} and new["teacher"] == old["teacher"]
    assert local_paths(new) == [] and old["config"]["data"].startswith("/")  # the input is left alone


# -- real files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", bundled_models(), ids=lambda m: m.name)
def test_bundled_files_name_no_local_path(model):
    meta = assert_shareable(model.path, "/work", "/tmp")
    prov = meta["srdistill.provenance"]
    data = prov["data"]["data"]
    assert data["name"] == "train-photos" and data["images"] == 38 and len(data["sha256"]) == 64
    assert prov["data"]["validation_data"]["name"] == "Set5" and prov["config"]["val_data"] == "Set5"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny `train` started from a file, and a tiny `distill` from it, in a uniquely named tmp dir."""
    root = tmp_path_factory.mktemp("private-place-91")
    photos = write_training_photos(root / "photos", ["a.png", "b.png"])
    val = write_training_photos(root / "val", ["v.png"])
    init = root / "init.safetensors"
    save_model(build_model("edsr-lite", 2, TINY_STUDENT), init)
    common = dict(arch="edsr-lite", arch_opt=TINY_STUDENT, scale=2, patch_size=8, batch_size=2, threads=1,
                  steps=1, val_every=1, device="cpu")
    trained = train(TrainConfig(**common, data=str(photos), val_data=str(val), init=str(init),
                                run_dir=str(root / "train-run"), output=str(root / "trained.safetensors")))
    distilled = distill(trained.output, "edsr-lite", photos, method="logits", student_options={"n_feats": 4, "n_resblocks": 1},
                        steps=1, patch_size=8, batch_size=2, threads=1, device="cpu", teacher_cache="off",
                        run_dir=str(root / "distill-run"), output=str(root / "distilled.safetensors"))
    return root, photos, val, init, trained, distilled


def test_a_trained_model_records_data_and_init_by_name_and_hash(runs):
    root, photos, val, init, trained, _ = runs
    for path in (trained.output, trained.run_dir / "model.safetensors"):
        prov = assert_shareable(path, root.name)["srdistill.provenance"]
        assert prov["data"]["data"] == dataset_fingerprint(photos, find_images(photos, 2).pairs)
        assert prov["data"]["validation_data"]["name"] == "val" and prov["data"]["validation_data"]["images"] == 1
        assert prov["init"] == {"file": "init.safetensors", "sha256": file_sha256(init)}
        assert prov["config"]["data"] == "photos" and prov["config"]["output"] == "trained.safetensors"
    # The run folder keeps the paths: it resumes from any working directory.
    assert str(photos.resolve()) in (trained.run_dir / "config.toml").read_text()


def test_a_distilled_model_records_its_teacher_by_name_and_hash(runs):
    root, photos, _, _, trained, distilled = runs
    for path in (distilled.output, distilled.run_dir / "model.safetensors"):
        prov = assert_shareable(path, root.name)["srdistill.provenance"]
        assert prov["teacher"]["file"] == "trained.safetensors"
        assert prov["teacher"]["sha256"] == file_sha256(trained.output)
        assert prov["data"]["data"]["name"] == "photos" and prov["data"]["data"]["images"] == 2


def test_train_init_takes_a_bundled_name(tmp_path, monkeypatch):
    """`train --init student-x2` starts from the bundled file and records it by name and hash."""
    folder = tmp_path / "weights"
    folder.mkdir()
    source = build_model("edsr-lite", 2, TINY_STUDENT)
    save_model(source, folder / "student_x2.safetensors")
    monkeypatch.setattr(bundled, "weights_dir", lambda: folder)
    photos = write_training_photos(tmp_path / "photos", ["a.png"])
    result = train(TrainConfig(arch="edsr-lite", arch_opt=TINY_STUDENT, scale=2, patch_size=8, batch_size=1,
                               threads=1, steps=1, lr=1e-9, device="cpu", data=str(photos), init="student-x2",
                               run_dir=str(tmp_path / "run")))
    trained = load_model(result.output)
    assert all(torch.allclose(v, source.net.state_dict()[k], atol=1e-6) for k, v in trained.net.state_dict().items())
    prov = trained.metadata["provenance"]
    assert prov["init"] == {"file": "student_x2.safetensors", "sha256": file_sha256(folder / "student_x2.safetensors"),
                            "bundled": "student-x2"}
    assert prov["config"]["init"] == "student-x2"


def test_train_cli_init_with_a_bundled_name_that_is_not_bundled(tmp_path):
    photos = write_training_photos(tmp_path / "photos", ["a.png"])
    result = run_cli("train", "--arch", "edsr-lite", "--scale", "2", "--init", "teacher-x8", "--data", photos,
                     "--steps", "1", "--run-dir", tmp_path / "run")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "teacher-x8" in lines[0] and "bundled" in lines[0], result.stderr
