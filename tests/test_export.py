"""``srdistill export`` and ``upscale --backend onnxruntime``: the real exporter and runtime, small models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, invoke, run_cli
from PIL import Image
from torch import nn

import srdistill
from srdistill.archs.spec import ArchSpec
from srdistill.data.imageio import read_image, write_image
from srdistill.errors import ExportError, UsageError
from srdistill.models import SRModel

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'srdistill[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'srdistill[onnx]'")

from srdistill.export import DEFAULT_OPSET, export_model  # noqa: E402 - needs the extra above
from srdistill.upscale import upscale_tensor  # noqa: E402


def span_student(scale: int = 2) -> SRModel:
    """A small training-form SPAN with non-trivial biases (fusion and export both see them)."""
    model = srdistill.build_model("span", scale, srdistill.get_arch("span").small, seed=0)
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            if name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    return model


@pytest.fixture(scope="module")
def span_file(tmp_path_factory) -> Path:
    return srdistill.save_model(span_student(), tmp_path_factory.mktemp("models") / "span_x2.safetensors")


def metadata_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_writes_a_checked_graph_with_dynamic_sizes_and_metadata(tmp_path, span_file):
    out = tmp_path / "span.onnx"
    result = run_cli("export", span_file, "-o", out)
    assert result.returncode == 0, result.stderr
    checks = [line for line in result.stdout.splitlines() if line.startswith("check: ONNX Runtime vs PyTorch")]
    assert len(checks) == 2 and all(line.endswith("ok") for line in checks), result.stdout
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert any(o.domain in ("", "ai.onnx") and o.version == DEFAULT_OPSET for o in proto.opset_import)
    meta = metadata_of(out)
    assert meta["srdistill.arch"] == "span" and meta["srdistill.scale"] == "2" and meta["srdistill.value_range"] == "0-1"
    hparams = json.loads(meta["srdistill.hparams"])
    assert hparams["fused"] is True and hparams["channels"] == 8  # the deployed form, fused
    provenance = json.loads(meta["srdistill.provenance"])
    assert provenance["exported_from"] == span_file.name and len(provenance["source_sha256"]) == 64
    assert meta["srdistill.size_multiple"] == "1" and meta["srdistill.precision"] == "float32"
    # The graph is the unfused file's function, at a size and batch neither check used.
    source = srdistill.load_model(span_file)
    x = torch.rand(3, 3, 21, 14, generator=torch.Generator().manual_seed(3))
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["output"], {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - source.net(x).numpy()).max() <= 1e-4
    # Fused: one Conv per re-parameterised convolution (head, 2 blocks x 3, body_end) + merge + upsample.
    assert sum(n.op_type == "Conv" for n in proto.graph.node) == 1 + 2 * 3 + 1 + 2


def test_fp16_export_where_the_spec_allows_it(tmp_path):
    result = export_model(span_student(), tmp_path / "half.onnx", fp16=True)
    assert result.precision == "float16" and len(result.checks) == 2 and result.max_diff <= result.tolerance
    weights = onnx.load(str(tmp_path / "half.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert metadata_of(tmp_path / "half.onnx")["srdistill.precision"] == "float16"


# -- bad input: one line, non-zero exit, no .onnx left behind ----------------------------------------
def assert_nothing_written(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.suffix == ".onnx" or p.name.endswith(".tmp")], list(folder.rglob("*"))


def test_a_file_that_is_not_a_model(tmp_path):
    notes = tmp_path / "notes.safetensors"
    notes.write_text("shopping list\n")
    assert_one_line_error(invoke("export", notes, "-o", tmp_path / "out.onnx"), "notes.safetensors")
    assert_nothing_written(tmp_path)


def test_an_existing_output_without_overwrite(tmp_path, span_file):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"keep me")
    assert_one_line_error(invoke("export", span_file, "-o", out), "already exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert invoke("export", span_file, "-o", out, "--overwrite").returncode == 0
    assert metadata_of(out)["srdistill.arch"] == "span"


def test_a_folder_that_cannot_be_written(tmp_path, span_file):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    assert_one_line_error(invoke("export", span_file, "-o", blocker / "out.onnx"), "cannot write", "not-a-folder")
    assert_nothing_written(tmp_path)


def test_fp16_on_an_architecture_that_is_not_safe_in_it(tmp_path):
    hp = {"img_size": 16, "window_size": 4, "depths": (1,), "embed_dim": 8, "num_heads": (2,), "upsampler": "pixelshuffledirect"}
    swin = srdistill.save_model(srdistill.build_model("swinir", 2, hp), tmp_path / "swin.safetensors")
    assert_one_line_error(invoke("export", swin, "-o", tmp_path / "s.onnx", "--fp16"), "--fp16", "swinir", "float16", code=2)
    assert_nothing_written(tmp_path)


class _Spectral(nn.Module):
    """A plugin network with an operation ONNX has no equivalent for (an FFT)."""

    def __init__(self, scale: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x + torch.fft.rfft2(x).abs().mean()))


def test_an_unexportable_operation_is_named(tmp_path):
    spec = ArchSpec(
        id="spectral", title="test plugin", build=lambda *, scale: _Spectral(scale), detect=lambda state: None,
        defaults={}, presets={}, blocks=lambda hp: (), block_channels=lambda hp: (), scales=(2,),
    )
    model = SRModel(spec, 2, {}, _Spectral(2))
    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path / "spectral.onnx")
    message = str(caught.value)
    assert "\n" not in message and "spectral" in message and "aten::fft_rfft2" in message
    assert_nothing_written(tmp_path)


def test_without_the_extra_one_line_names_it(tmp_path, span_file):
    # A stand-in package that fails to import, as a missing one does, first on the path.
    blocker = tmp_path / "site" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named onnxruntime')\n")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    assert_one_line_error(run_cli("export", span_file, "-o", tmp_path / "out.onnx", env=env), "pip install 'srdistill[onnx]'", code=2)
    assert_nothing_written(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    upscaled = run_cli("upscale", tmp_path / "in.png", "--model", span_file, "-o", tmp_path / "out.png", "--backend", "onnxruntime", env=env)
    assert_one_line_error(upscaled, "pip install 'srdistill[onnx]'", code=2)
    assert not (tmp_path / "out.png").exists()


# -- the onnxruntime backend ------------------------------------------------------------------------
def test_the_backend_matches_torch_through_tiles(span_file):
    model = srdistill.load_model(span_file)
    x = torch.rand(3, 37, 29, generator=torch.Generator().manual_seed(5))
    reference = upscale_tensor(model, x, tile=16, device="cpu")
    got = upscale_tensor(model, x, tile=16, backend="onnxruntime")
    assert got.shape == reference.shape == (3, 74, 58)
    assert (got - reference).abs().max() <= 1e-4
    tta = upscale_tensor(model, x, tile=16, backend="onnxruntime", tta=True)
    assert (tta - upscale_tensor(model, x, tile=16, device="cpu", tta=True)).abs().max() <= 1e-4


def test_the_backend_writes_the_same_files(tmp_path, span_file):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    rgba = (rng.random((30, 26, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(rng.random((30, 26)) < 0.3, 0, 255)
    Image.fromarray(rgba).save(src / "alpha.png")
    write_image(src / "deep.png", rng.integers(0, 65536, size=(20, 18, 3), dtype=np.uint16))
    outs = {}
    for backend in ("torch", "onnxruntime"):
        outs[backend] = tmp_path / backend
        result = invoke("upscale", src, "--model", span_file, "-o", outs[backend], "--tile", "16", "--backend", backend, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["failed"] == 0
    for name, bits in (("alpha.png", 8), ("deep.png", 16)):
        a, b = read_image(outs["torch"] / name), read_image(outs["onnxruntime"] / name)
        assert a.bit_depth == b.bit_depth == bits and a.pixels.shape == b.pixels.shape
        step = 1 if bits == 8 else 257  # 1/255 in the file's own units
        assert np.abs(a.pixels.astype(np.int64) - b.pixels.astype(np.int64)).max() <= step, name


def test_the_backend_refuses_what_it_cannot_run(span_file):
    model = srdistill.load_model(span_file)
    with pytest.raises(UsageError, match="onnxruntime runs float32"):
        upscale_tensor(model, torch.rand(3, 8, 8), backend="onnxruntime", dtype="bfloat16")
    with pytest.raises(UsageError, match="not one of torch, onnxruntime"):
        upscale_tensor(model, torch.rand(3, 8, 8), backend="tensorrt")


def test_the_backend_measures_its_thread_count_on_repeated_tiles(span_file):
    from srdistill.export import onnx_bytes, session
    from srdistill.upscale.onnx_runner import OnnxRunner

    model = srdistill.load_model(span_file)
    graph = onnx_bytes(model)
    runner = OnnxRunner(session(graph, 2), model.scale, 1, 1, 1.0, graph, threads=2, tune=True)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        expected = model.net(x)
    outputs = [runner(x) for _ in range(4)]  # warm-up, timed with 2 threads, timed with 1, then the choice
    assert not runner._tune and runner.thread_count in (1, 2)
    assert all((out - expected).abs().max() <= 1e-4 for out in outputs)


# -- SwinIR: window grid, padding and shifted-window mask are graph ops ------------------------------
OFFICIAL = Path(__file__).resolve().parent / "fixtures" / "official"


def swinir_s_geometry(scale: int = 2) -> SRModel:
    """The swinir-s preset's window 8 / shift 4 / training size 64 / head, two thin RSTBs for speed."""
    hp = {**srdistill.get_arch("swinir").resolve(preset="swinir-s"), "depths": (2, 2), "embed_dim": 12, "num_heads": (2, 2)}
    return srdistill.build_model("swinir", scale, hp, seed=0)


@pytest.mark.parametrize("source", ["swinir_classical_small_x4.pth", "swinir_realworld_small_x4.pth", "swinir-s"])
def test_swinir_exports_with_dynamic_height_and_width(tmp_path, source):
    model = swinir_s_geometry() if source == "swinir-s" else srdistill.load_model(OFFICIAL / source)
    window = model.hparams["window_size"]
    out = tmp_path / "swinir.onnx"
    result = export_model(model, out)
    assert [shape[0] for shape, _ in result.checks] == [1, 2] and result.max_diff <= 1e-4
    assert metadata_of(out)["srdistill.size_multiple"] == str(window)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(4)
    # Sizes the trace never saw: the training size (PyTorch uses the checkpoint's stored mask, the
    # graph builds its own), a non-square window multiple, and odd sizes the graph pads itself.
    sizes = [(1, model.hparams["img_size"], model.hparams["img_size"]), (1, 40, 56), (2, 19, 27), (1, window + 1, 2 * window - 3)]
    for batch, h, w in sizes:
        x = torch.rand(batch, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = model.net.eval()(x).numpy()
        got = sess.run(["output"], {"input": x.numpy()})[0]
        assert got.shape == expected.shape == (batch, 3, h * model.scale, w * model.scale)
        assert np.abs(got - expected).max() <= 1e-4, (batch, h, w)


def test_the_backend_runs_swinir_through_tiles(tmp_path):
    model = swinir_s_geometry()
    x = torch.rand(3, 37, 29, generator=torch.Generator().manual_seed(6))
    reference = upscale_tensor(model, x, tile=16, device="cpu")
    got = upscale_tensor(model, x, tile=16, backend="onnxruntime")
    assert got.shape == reference.shape == (3, 74, 58)
    assert (got - reference).abs().max() <= 1e-4
    # The command: same image through both backends, official-layout checkpoint.
    Image.fromarray((x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(tmp_path / "in.png")
    checkpoint = OFFICIAL / "swinir_lightweight_small_x2.pth"
    for backend in ("torch", "onnxruntime"):
        result = invoke("upscale", tmp_path / "in.png", "--model", checkpoint, "-o", tmp_path / f"{backend}.png", "--tile", "16", "--backend", backend)
        assert result.returncode == 0, result.stderr
    a, b = read_image(tmp_path / "torch.png").pixels, read_image(tmp_path / "onnxruntime.png").pixels
    assert a.shape == b.shape == (74, 58, 3)
    assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1


class _SizeBaked(nn.Module):
    """A plugin network that turns the input's height and width into Python ints: the tracer bakes them in."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[2]), int(x.shape[3])
        return self.shuffle(self.conv(x)).reshape(-1, 3, height * self.scale, width * self.scale)


def test_a_forward_that_fixes_the_size_is_refused_by_the_second_size_check(tmp_path):
    spec = ArchSpec(
        id="size-baked", title="test plugin", build=lambda *, scale: _SizeBaked(scale), detect=lambda state: None,
        defaults={}, presets={}, blocks=lambda hp: (), block_channels=lambda hp: (), scales=(2,),
    )
    with pytest.raises(ExportError) as caught:
        export_model(SRModel(spec, 2, {}, _SizeBaked(2)), tmp_path / "baked.onnx")
    message = str(caught.value)
    assert "\n" not in message and "size-baked" in message and "2x3x45x37" in message and "fixes sizes" in message
    assert_nothing_written(tmp_path)
