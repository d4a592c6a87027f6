"""Device, precision and loader settings are decided in train.machine and recorded by every run."""

from __future__ import annotations

import json

import torch
from conftest import TINY_CONFIG

from srdistill.models import load_model
from srdistill.train import TrainCallback, TrainConfig, train
from srdistill.train.machine import configure_backends, grad_scaler, loader_settings


def test_loader_settings_follow_the_device():
    cpu = loader_settings(torch.device("cpu"), -1, cached=True)
    assert (cpu.workers, cpu.pin_memory, cpu.non_blocking) == (0, False, False)
    cuda = loader_settings(torch.device("cuda"), -1, cached=False)  # a device object needs no GPU
    assert cuda.workers >= 1 and cuda.pin_memory and cuda.non_blocking
    assert loader_settings(torch.device("cuda"), 3, cached=True).workers == 3


def test_cuda_backends_are_fast_and_cpu_ones_untouched():
    before = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
    try:
        assert configure_backends(torch.device("cpu")).items() >= {"cudnn_benchmark": False, "tf32": False}.items()
        assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before
        assert configure_backends(torch.device("cuda")).items() >= {"cudnn_benchmark": True, "tf32": True}.items()
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
    finally:
        torch.backends.cudnn.benchmark = before[0]
        torch.set_float32_matmul_precision(before[1])


def test_only_fp16_gets_a_loss_scaler():
    assert grad_scaler(torch.device("cpu"), "bf16") is None and grad_scaler(torch.device("cpu"), "fp32") is None
    assert isinstance(grad_scaler(torch.device("cpu"), "fp16"), torch.amp.GradScaler)


class StartInfo(TrainCallback):
    info: dict = {}

    def on_start(self, info):
        self.info = info


def test_a_run_reports_and_records_device_precision_and_workers(tmp_path, images):
    seen = StartInfo()
    config = TrainConfig(**dict(TINY_CONFIG, data=str(images), run_dir=str(tmp_path / "run"), steps=2,
                                device="cpu", precision="fp32", workers=0))
    result = train(config, callback=seen)
    want = {"device": "cpu", "device_requested": "cpu", "precision": "fp32", "precision_requested": "fp32",
            "workers": 0, "pin_memory": False, "non_blocking": False}
    assert want.items() <= seen.info.items()
    assert want.items() <= load_model(result.output).metadata["provenance"]["machine"].items()
    assert seen.info["allocator"] == load_model(result.output).metadata["provenance"]["machine"]["allocator"]
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    started = [e for e in events if e.get("event") == "started"]
    assert len(started) == 1 and want.items() <= started[0].items()
