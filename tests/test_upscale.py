"""Tiled inference, channels, scale handling and the file API of ``srdistill.upscale``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import srdistill
from srdistill.data.imageio import read_image, write_image
from srdistill.errors import ImageError, UsageError
from srdistill.inference import ThreadTuner, TileOutOfMemory, choose_dtype
from srdistill.models import SRModel
from srdistill.tiling import plan_tiles, split_axis
from srdistill.upscale import UpscaleProgress, Upscaler, bleed_transparent, upscale_file, upscale_tensor

torch.set_num_threads(1)  # two shared cores: avoid oversubscription between tests' processes
TOL = 1 / 255


class CallLog(list):
    """Shared by the copies the upscaler makes of a network (it never mutates the caller's)."""

    def __deepcopy__(self, memo):
        return self


class Resample(nn.Module):
    """A parameter-free "network" (nearest or bicubic upsampling): equivariant, predictable output."""

    def __init__(self, scale: int, mode: str = "nearest", fail_above: int | None = None):
        super().__init__()
        self.scale, self.mode, self.fail_above = scale, mode, fail_above
        self.calls = CallLog()

    def forward(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        if self.fail_above is not None and max(x.shape[-2:]) > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        kwargs = {"align_corners": False} if self.mode == "bicubic" else {}
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, **kwargs)


def resample_model(scale: int = 2, mode: str = "nearest", **kw) -> SRModel:
    spec = srdistill.get_arch("edsr")
    return SRModel(spec, scale, spec.resolve(), Resample(scale, mode, **kw))


def small_swinir(scale: int = 2) -> SRModel:
    hp = {"img_size": 16, "window_size": 4, "depths": (2, 2), "embed_dim": 12, "num_heads": (2, 2),
          "upsampler": "pixelshuffledirect"}
    return srdistill.build_model("swinir", scale, hp)


def whole_image(model: SRModel, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.net.eval()(x[None])[0].clamp(0, 1)


# -- tiled == untiled ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(45, 61), (33, 17), (5, 7)])
def test_tiled_equals_untiled_edsr_lite(size):
    # edsr-lite's receptive field is ~20 input px; pad - blend (24 - 12 = 12) already stays within
    # 1/255 with random weights, and a larger pad is exact up to float rounding.
    torch.manual_seed(0)
    model = srdistill.build_model("edsr-lite", 4)
    x = torch.rand(3, *size)
    reference = whole_image(model, x)
    out = upscale_tensor(model, x, tile=16, device="cpu")  # default pad 24 > image for (5, 7)
    assert out.shape == (3, size[0] * 4, size[1] * 4)
    assert (out - reference).abs().max() <= TOL
    exact = upscale_tensor(model, x, tile=16, tile_pad=48, device="cpu")
    assert (exact - reference).abs().max() < 1e-4


def test_tiled_equals_untiled_swinir_on_its_window_grid():
    torch.manual_seed(0)
    model = small_swinir()
    x = torch.rand(3, 37, 45)  # not multiples of the window: the edge tiles pad like the whole image
    reference = whole_image(model, x)
    out = upscale_tensor(model, x, tile=12, tile_pad=24, device="cpu")
    assert out.shape == reference.shape
    assert (out - reference).abs().max() <= TOL
    # Too little context is visibly wrong: the test can fail.
    loose = upscale_tensor(model, x, tile=12, tile_pad=4, device="cpu")
    assert (loose - reference).abs().max() > TOL


def test_grid_cores_are_aligned_and_blend_fits():
    assert split_axis(100, 32, 8) == [(0, 24), (24, 48), (48, 72), (72, 100)]
    plan = plan_tiles(100, 30, tile=30, pad=10, multiple=8)
    assert plan.pad == 16 and plan.tile == 24  # rounded to the window multiple
    assert all(a % 8 == 0 for a, _ in plan.rows + plan.cols)
    assert 2 * plan.blend <= min(b - a for a, b in plan.rows + plan.cols)


def test_wide_outputs_get_shorter_tiles_to_bound_the_band():
    budget = 160 * 2**20
    plan = plan_tiles(3000, 4000, 768, 24, 1, scale=4, band_budget=budget)
    heights = [b - a for a, b in plan.rows]
    widths = [b - a for a, b in plan.cols]
    assert max(heights) < 768 < max(widths)  # same area, another shape
    assert 12 * (max(heights) + 2 * plan.blend) * 4000 * 16 <= budget
    assert plan_tiles(300, 400, 768, 24, 1, scale=4, band_budget=budget).count == 1


def test_thread_count_is_measured_then_kept():
    torch.set_num_threads(2)
    try:
        tuner = ThreadTuner(True)
        seen = []

        def forward(t):
            seen.append(torch.get_num_threads())
            return t

        for _ in range(5):
            tuner.run(forward, torch.zeros(1, 3, 8, 8))
        # warm-up, timed at the default count, timed at one thread, then the faster one for good
        assert seen[:3] == [2, 2, 1] and tuner.chosen in (1, 2) and seen[3:] == [tuner.chosen] * 2
        tuner.restore()
        assert torch.get_num_threads() == 2
        assert ThreadTuner(True, fixed=1).chosen == 1 and ThreadTuner(False).chosen == 2
    finally:
        torch.set_num_threads(1)


def test_rows_are_streamed_once_in_order():
    model = resample_model(2)
    up = Upscaler(model, tile=8, tile_pad=4, device="cpu")
    x = torch.rand(3, 30, 20)
    seen = []
    out = torch.zeros(3, 60, 40)

    def sink(y0, rows):
        seen.append((y0, rows.shape[-2]))
        out[:, y0 : y0 + rows.shape[-2]] = rows

    tiles = up.run(x, sink)
    assert tiles == 4 * 3 and len(seen) == 4
    assert [y for y, _ in seen] == sorted(y for y, _ in seen)
    assert sum(n for _, n in seen) == 60 and seen[0][0] == 0
    assert torch.allclose(out, F.interpolate(x[None], scale_factor=2)[0], atol=1e-6)  # blend weights sum to 1


def test_out_of_memory_halves_the_tile_and_restarts():
    model = resample_model(2, fail_above=40)
    notes = []

    class Notes(UpscaleProgress):
        def note(self, message):
            notes.append(message)

    x = torch.rand(3, 64, 64)
    out = upscale_tensor(model, x, tile=64, tile_pad=4, device="cpu", progress=Notes())
    assert torch.allclose(out, F.interpolate(x[None], scale_factor=2)[0], atol=1e-6)
    assert notes and "retrying with 32px tiles" in notes[0]
    with pytest.raises(srdistill.SrdistillError, match="out of memory"):
        upscale_tensor(resample_model(2, fail_above=1), x, tile=64, tile_pad=0, device="cpu")
    assert issubclass(TileOutOfMemory, Exception)


def test_auto_tile_respects_multiple_and_model_size():
    small = Upscaler(srdistill.build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 1}), device="cpu")
    big = Upscaler(srdistill.build_model("edsr-baseline", 4), device="cpu")
    swin = Upscaler(small_swinir(), device="cpu")
    assert big.tile <= small.tile
    assert swin.tile % 4 == 0 and swin.tile >= 16


# -- TTA, channels -------------------------------------------------------------------------------
def test_tta_of_an_equivariant_model_is_the_model():
    model = resample_model(3)
    x = torch.rand(3, 11, 17)
    plain = upscale_tensor(model, x, tile=64, device="cpu")
    tta = upscale_tensor(model, x, tile=64, tta=True, device="cpu")
    assert torch.equal(plain, F.interpolate(x[None], scale_factor=3)[0])
    assert torch.allclose(tta, plain, atol=1e-6)
    assert len(model.net.calls) == 1 + 8


def test_tta_shape_with_a_real_model():
    torch.manual_seed(0)
    model = srdistill.build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1})
    x = torch.rand(3, 9, 14)
    out = upscale_tensor(model, x, tta=True, device="cpu")
    assert out.shape == (3, 18, 28)
    assert not torch.equal(out, upscale_tensor(model, x, device="cpu"))  # random weights: not equivariant


def test_grayscale_stays_grayscale_and_batches_work():
    torch.manual_seed(0)
    model = srdistill.build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1})
    gray = torch.rand(1, 10, 12)
    out = upscale_tensor(model, gray, device="cpu")
    rgb = upscale_tensor(model, gray.expand(3, -1, -1), device="cpu")
    assert out.shape == (1, 20, 24)
    assert torch.allclose(out[0], rgb.mean(0), atol=1e-6)
    batch = upscale_tensor(model, torch.rand(2, 3, 6, 5), device="cpu")
    assert batch.shape == (2, 3, 12, 10)


def test_no_black_fringe_with_straight_alpha():
    # An opaque red disc on fully transparent *black*: a linear upscaler without bleeding mixes
    # the black into the edge.
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    alpha = (((yy - 12) ** 2 + (xx - 12) ** 2) < 49).float()[None]
    rgba = torch.cat([torch.tensor([1.0, 0, 0])[:, None, None] * alpha, alpha])
    model = resample_model(4, "bicubic")
    out = upscale_tensor(model, rgba, device="cpu")
    assert out.shape == (4, 96, 96)
    visible = out[3] > 0.05
    assert visible.sum() > 1000
    assert out[0][visible].min() > 0.99 and out[1:3, visible].max() < 0.01
    naive = F.interpolate(rgba[None, :3], scale_factor=4, mode="bicubic")[0].clamp(0, 1)
    assert naive[0][visible].min() < 0.5  # the fringe this avoids


def test_bleed_keeps_visible_pixels_and_opaque_alpha_is_exact():
    color = torch.rand(3, 9, 7)
    alpha = torch.zeros(1, 9, 7)
    alpha[:, 2:4, 3] = 0.5
    bled = bleed_transparent(color, alpha)
    assert torch.equal(bled[:, 2:4, 3], color[:, 2:4, 3])
    assert torch.allclose(bled[:, 0, 0], color[:, 2:4, 3].mean(1), atol=1e-6)
    out = upscale_tensor(resample_model(2), torch.cat([color, torch.ones(1, 9, 7)]), device="cpu")
    assert torch.equal(out[3], torch.ones(18, 14))


def test_one_pixel_image():
    model = srdistill.build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 1})
    assert upscale_tensor(model, torch.rand(3, 1, 1), device="cpu").shape == (3, 4, 4)
    assert upscale_tensor(small_swinir(), torch.rand(3, 1, 2), device="cpu").shape == (3, 2, 4)


# -- scale, dtype ---------------------------------------------------------------------------------
def test_other_scale_is_resized_or_refused():
    model = resample_model(4)
    x = torch.rand(3, 10, 8)
    out = upscale_tensor(model, x, scale=2, device="cpu")
    assert out.shape == (3, 20, 16)
    with pytest.raises(UsageError, match=r"model is x4, scale 2 asked; .*\(allow_resize=True\)"):
        upscale_tensor(model, x, scale=2, allow_resize=False, device="cpu")


def test_dtype_policy():
    swin_safe = srdistill.get_arch("swinir").safe_dtypes
    cpu = torch.device("cpu")
    assert choose_dtype(swin_safe, cpu) == torch.float32
    assert choose_dtype(swin_safe, cpu, torch.bfloat16) == torch.bfloat16
    with pytest.raises(UsageError, match="not numerically safe in float16"):
        choose_dtype(swin_safe, cpu, torch.float16)
    torch.manual_seed(0)
    model = srdistill.build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1})
    x = torch.rand(3, 8, 8)
    bf16 = upscale_tensor(model, x, dtype="bfloat16", device="cpu")
    assert (bf16 - upscale_tensor(model, x, device="cpu")).abs().max() < 0.05
    assert next(model.net.parameters()).dtype == torch.float32  # the caller's model is untouched


# -- files -----------------------------------------------------------------------------------------
def test_16bit_png_stays_16bit(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, size=(6, 5, 3), dtype=np.uint16)
    write_image(tmp_path / "in.png", pixels)
    result = upscale_file(resample_model(2), tmp_path / "in.png", tmp_path / "out.png")
    got = read_image(tmp_path / "out.png")
    assert got.bit_depth == 16 and got.pixels.dtype == np.uint16
    assert np.array_equal(got.pixels, pixels.repeat(2, 0).repeat(2, 1))  # nearest: every 16-bit value kept
    assert result.size_out == (10, 12)


def test_rgba_and_gray_files_keep_their_channels(tmp_path):
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[1:5, 1:5] = (10, 200, 30, 255)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6)).save(tmp_path / "g.png")
    up = Upscaler(resample_model(2), device="cpu")
    upscale_file(up, tmp_path / "a.png", tmp_path / "a2.png")
    upscale_file(up, tmp_path / "g.png", tmp_path / "g2.png")
    assert Image.open(tmp_path / "a2.png").mode == "RGBA" and Image.open(tmp_path / "g2.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a2.png"))[2:10, 2:10], rgba[1:5, 1:5].repeat(2, 0).repeat(2, 1))


def test_output_budget_checked_before_work(tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "in.png")
    model = resample_model(2)
    with pytest.raises(ImageError, match="raise max_output_pixels"):
        upscale_file(model, tmp_path / "in.png", tmp_path / "out.png", max_output_pixels=1000)
    assert model.net.calls == [] and not (tmp_path / "out.png").exists()
