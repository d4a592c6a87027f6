"""Every command on CUDA: train, distill with each method, upscale (tiling, out-of-memory retry),
eval, compare, in bf16 and in fp16 where the architecture allows it; torch.compile; one-rank DDP
over NCCL. Skipped without CUDA (see conftest)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from cli_helpers import run_cli

from srdistill.distill.registry import METHODS

METHOD_IDS = sorted(METHODS.load_all())
TINY = ["--batch-size", "4", "--patch-size", "24", "--val-every", "0", "--device", "cuda", "--json"]


def metadata(path):
    from srdistill import load_model

    return load_model(str(path)).metadata["provenance"]


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_train_on_cuda(tmp_path, photos, precision):
    out = tmp_path / "m.safetensors"
    ok(run_cli("train", "--arch", "edsr-lite", "--data", photos, "--steps", "8", "--precision", precision,
               "--run-dir", tmp_path / "run", "-o", out, *TINY, timeout=300))
    meta = metadata(out)
    assert meta["precision"] == precision and "cuda" in json.dumps(meta)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", METHOD_IDS)
def test_distill_each_method_on_cuda(tmp_path, photos, teacher_file, method, precision):
    # fp16: the student (edsr-lite) allows it, the SwinIR teacher does not (it runs in float32).
    out = tmp_path / "s.safetensors"
    options = ["--method-opt", "bpm_every=1"] if method == "mipkd" else []
    ok(run_cli("distill", "--teacher", teacher_file, "--student-arch", "edsr-lite", "--method", method, *options,
               "--data", photos, "--steps", "6", "--precision", precision, "--run-dir", tmp_path / "run", "-o", out,
               *TINY, timeout=300))
    assert out.exists()


def test_upscale_with_tiles_on_cuda(tmp_path, photos):
    out = tmp_path / "up.png"
    ok(run_cli("upscale", photos / "p0.png", "-m", "edsr-lite", "--device", "cuda", "--tile", "32", "-o", out))
    from PIL import Image

    assert Image.open(out).size == (72 * 4, 64 * 4)


def test_upscale_retries_with_smaller_tiles_after_a_real_cuda_out_of_memory():
    from srdistill import build_model
    from srdistill.upscale import Upscaler

    model = build_model("edsr-baseline", 4, seed=0)
    image = torch.rand(3, 1024, 1024)
    free, total = torch.cuda.mem_get_info()
    torch.cuda.empty_cache()
    # 1.5 GiB for this process: a 1024px fp32 tile of edsr-baseline needs several GiB, a 256px one fits.
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5 * 2**30 / total))
    try:
        upscaler = Upscaler(model, tile=1024, device="cuda", dtype="float32")
        out = upscaler.upscale(image)
        assert out.shape == (3, 4096, 4096) and upscaler.tile < 1024
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def test_eval_and_compare_on_cuda(tmp_path, photos):
    result = ok(run_cli("eval", "-m", "edsr-lite", "--data", photos, "--device", "cuda", "--json"))
    rows = json.loads(result.stdout)["rows"]
    assert rows and all(r["psnr"] > 10 for r in rows)
    ok(run_cli("compare", photos / "p1.png", "--from-hr", "-m", "edsr-lite", "--device", "cuda", "-o", tmp_path / "c.png"))
    assert (tmp_path / "c.png").exists()


def test_torch_compile_matches_eager_training_step():
    from srdistill import build_model

    model = build_model("edsr-lite", 4, seed=0).net.cuda()
    x = torch.rand(4, 3, 32, 32, device="cuda")
    compiled = torch.compile(model)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager_out, compiled_out = model(x), compiled(x)
    compiled_out.float().mean().backward()
    assert torch.allclose(eager_out.float(), compiled_out.float(), atol=2e-2)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_rank_ddp_over_nccl_runs_a_mipkd_step():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from srdistill import build_model
    from srdistill.distill import DistillContext, match_boundaries
    from srdistill.distill.registry import get_method
    from srdistill.train.ddp import DistContext
    from srdistill.train.objective import Batch, StepModule
    from srdistill.train.step import Stepper

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        teacher = build_model("edsr-baseline", 4, {"n_resblocks": 4}, seed=1)
        teacher.net.cuda().eval().requires_grad_(False)
        student = build_model("edsr-lite", 4, seed=0)
        spec = get_method("mipkd")
        obj = spec.create(DistillContext(teacher, student, match_boundaries(teacher, student), seed=0, teacher_cache="off"),
                          {"bpm_every": 1})
        module = StepModule(student.net.cuda().train(), obj).cuda()
        model = DDP(module, device_ids=None, find_unused_parameters=True)
        params = [p for p in module.parameters() if p.requires_grad]
        stepper = Stepper(model=model, student=module.student, params=params, optimizer=torch.optim.Adam(params),
                          weights=obj.weights, device=torch.device("cuda"), precision="bf16", grad_clip=0.0,
                          ctx=DistContext(0, 1, 0, 1, "nccl"), objective_name="mipkd")
        lr, hr = torch.rand(4, 3, 24, 24, device="cuda"), torch.rand(4, 3, 96, 96, device="cuda")
        for _ in range(2):
            out = stepper(Batch(lr, hr, torch.arange(4), torch.zeros(4, dtype=torch.long)), 1e-4,
                          stop=False, time_up=False, checkpoint_due=False)
            assert not out.skipped and torch.isfinite(torch.tensor(out.loss))
    finally:
        dist.destroy_process_group()
