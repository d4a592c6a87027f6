"""Bad model files: one clear line on stderr, non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from official_fixtures import FIXTURES
from safetensors.torch import save_file

from srdistill import build_model, save_model


@pytest.fixture
def out(tmp_path):
    """An output path for `convert`; each test checks nothing appeared there."""
    path = tmp_path / "out" / "converted.safetensors"
    yield path
    assert not path.exists()
    if path.parent.exists():
        assert list(path.parent.iterdir()) == [], "a temporary file was left behind"


def convert_fails(src, out, *fragments):
    return assert_one_line_error(run_cli("convert", src, out), *fragments)


def test_missing_file(tmp_path, out):
    convert_fails(tmp_path / "nope.pth", out, "nope.pth", "no such file")


def test_directory_instead_of_file(tmp_path, out):
    convert_fails(tmp_path, out, "is a directory")


def test_empty_file(tmp_path, out):
    (tmp_path / "empty.pth").write_bytes(b"")
    convert_fails(tmp_path / "empty.pth", out, "empty.pth", "empty")


def test_truncated_safetensors(tmp_path, out):
    src = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    convert_fails(src, out, "model.safetensors", "truncated")


def test_safetensors_header_claims_more_than_file(tmp_path, out):
    src = tmp_path / "lying.safetensors"
    src.write_bytes(struct.pack("<Q", 10_000) + b'{"w": {}}')
    convert_fails(src, out, "lying.safetensors", "header claims 10000 bytes")


def test_non_float_tensors(tmp_path, out):
    model = build_model("edsr-baseline", 2, {"n_feats": 8, "n_resblocks": 1})
    state = {k: v.to(torch.int32) if k == "head.0.weight" else v for k, v in model.net.state_dict().items()}
    src = tmp_path / "int.pth"
    torch.save(state, src)
    convert_fails(src, out, "head.0.weight", "int32")


def test_nan_weights(tmp_path, out):
    model = build_model("edsr-baseline", 2, {"n_feats": 8, "n_resblocks": 1})
    state = model.net.state_dict()
    state["body.0.body.0.weight"][0, 0, 0, 0] = float("nan")
    src = tmp_path / "nan.pth"
    torch.save(state, src)
    convert_fails(src, out, "body.0.body.0.weight", "NaN")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_without_running(tmp_path, out):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    with open(src, "wb") as fh:
        pickle.dump({"params": _RunsCode(marker)}, fh)
    convert_fails(src, out, "evil.pth", "refused", "could run code")
    assert not marker.exists(), "the pickle's payload ran"


@pytest.mark.parametrize(("name", "fmt", "kind"), [("photo.png", "PNG", "a PNG image"), ("photo.pth", "JPEG", "a JPEG image")])
def test_an_image_given_as_a_model_is_named_as_an_image(tmp_path, out, name, fmt, kind):
    from PIL import Image

    src = tmp_path / name
    Image.new("RGB", (8, 8), (10, 20, 30)).save(src, format=fmt)
    line = convert_fails(src, out, name, f"is {kind}, not a model file", "srdistill upscale")
    assert "could run code" not in line


def test_torchscript_archive_is_refused(tmp_path, out):
    src = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(src))
    convert_fails(src, out, "TorchScript")


def test_unknown_network(tmp_path, out):
    src = tmp_path / "mystery.pth"
    torch.save({"encoder.stem.weight": torch.zeros(8, 3, 3, 3), "decoder.out.weight": torch.zeros(3, 8, 3, 3)}, src)
    line = convert_fails(src, out, "no installed architecture recognises", "plugin")
    assert "closest" in line


def test_known_network_with_one_wrong_shape(tmp_path, out):
    state = torch.load(FIXTURES / "edsr_small_x4.pth", weights_only=True)
    state["body.1.body.0.weight"] = torch.zeros(16, 16, 5, 5)
    src = tmp_path / "edsr_bad.pth"
    torch.save(state, src)
    convert_fails(src, out, "body.1.body.0.weight", "(16, 16, 5, 5)", "(16, 16, 3, 3)")


def test_conflicting_metadata(tmp_path, out):
    model = build_model("edsr-baseline", 2, {"n_feats": 8, "n_resblocks": 1})
    good = save_model(model, tmp_path / "good.safetensors")
    from safetensors import safe_open

    with safe_open(str(good), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["srdistill.scale"] = "4"
    src = tmp_path / "conflict.safetensors"
    save_file(tensors, src, metadata=meta)
    convert_fails(src, out, "metadata says x4", "x2")
    meta["srdistill.scale"] = "2"
    meta["srdistill.hparams"] = json.dumps({**model.hparams, "n_feats": 32})
    save_file(tensors, src, metadata=meta)
    convert_fails(src, out, "n_feats=32", "n_feats=8")


def test_output_path_exists(tmp_path):
    dst = tmp_path / "exists.safetensors"
    dst.write_bytes(b"precious")
    result = run_cli("convert", FIXTURES / "edsr_small_x4.pth", dst)
    assert_one_line_error(result, "already exists", "--overwrite")
    assert dst.read_bytes() == b"precious"
    ok = run_cli("convert", FIXTURES / "edsr_small_x4.pth", dst, "--overwrite")
    assert ok.returncode == 0, ok.stderr
    assert dst.read_bytes() != b"precious"


def test_bad_option_value(tmp_path, out):
    result = run_cli("convert", FIXTURES / "edsr_small_x4.pth", out, "--opt", "res_scale=abc")
    assert_one_line_error(result, "res_scale", "'abc'", code=2)


def test_protocol2_pickle_names_the_blocked_callable(tmp_path, out):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil2.pth"
    with open(src, "wb") as fh:
        pickle.dump({"params": _RunsCode(marker)}, fh, protocol=2)
    convert_fails(src, out, "refused", "system")
    assert not marker.exists()
