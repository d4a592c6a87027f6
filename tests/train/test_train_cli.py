"""`srdistill train` end to end: run folder, JSON, and every bad input as one clear line."""

from __future__ import annotations

import json

import torch
from conftest import TINY_ARGS, write_images
from PIL import Image
from typer.testing import CliRunner

from srdistill.cli import app
from srdistill.io import checkpoints as ck
from srdistill.models import load_model


def cli(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def one_line_error(result, *fragments, code=None) -> str:
    assert result.exit_code != 0, result.stdout
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_a_run_fills_its_folder(tmp_path, images):
    run, out = tmp_path / "run", tmp_path / "final.safetensors"
    result = cli(*TINY_ARGS, "--data", images, "--steps", 4, "--run-dir", run, "-o", out, "--val-fraction", 0.25, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 4 and summary["output"] == str(out) and summary["validation"]["images"] == 1
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "curve.png", "metrics.jsonl", "model.safetensors"]
    assert Image.open(run / "curve.png").size[0] > 100
    model = load_model(out)
    assert (model.arch, model.scale, model.hparams["n_feats"]) == ("edsr", 2, 8)
    prov = model.metadata["provenance"]
    assert prov["config"]["arch"] == "edsr-lite" and prov["config"]["arch_opt"] == {"n_feats": 8, "n_resblocks": 1}
    assert "arch_opt = { n_feats = 8, n_resblocks = 1 }" in (run / "config.toml").read_text() or "n_feats = 8" in (run / "config.toml").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "finished"
    assert any("data_ms" in r and "lr" in r and "steps_per_s" in r for r in records)


def test_config_file_with_flags_overriding(tmp_path, images):
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'arch = "edsr-lite"\ndata = "{images}"\nscale = 2\npatch-size = 8\nbatch-size = 2\nsteps = 9\n'
                   f'threads = 1\n[arch_opt]\nn_feats = 8\nn_resblocks = 1\n')
    result = cli("--config", cfg, "--steps", 2, "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["config"]["batch_size"] == 2


# -- bad input: one line, non-zero exit, no traceback, nothing lost ------------------------------------
def test_missing_data_folder(tmp_path):
    one_line_error(cli(*TINY_ARGS, "--data", tmp_path / "nope", "--steps", 1, "--run-dir", tmp_path / "r"), "nope", "does not exist")
    assert not (tmp_path / "r").exists()


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(cli(*TINY_ARGS, "--data", tmp_path / "empty", "--steps", 1, "--run-dir", tmp_path / "r"), "holds no images")


def test_folder_of_non_images(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not an image")
    (folder / "b.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    (folder / "c.txt").write_text("text")
    one_line_error(cli(*TINY_ARGS, "--data", folder, "--steps", 1, "--run-dir", tmp_path / "r"), "none of the 2 image(s)", "a.png")
    assert not (tmp_path / "r").exists()


def test_images_smaller_than_a_patch(tmp_path):
    folder = write_images(tmp_path / "small", count=2, size=(10, 10))
    one_line_error(cli(*TINY_ARGS, "--data", folder, "--steps", 1, "--run-dir", tmp_path / "r"), "smaller than one 8x8 LR patch", "--patch-size")


def test_unknown_preset(tmp_path, images):
    one_line_error(cli("--arch", "edsr-huge", "--data", images, "--steps", 1), "unknown preset 'edsr-huge'", "edsr-lite", code=2)


def test_bad_arch_option(tmp_path, images):
    one_line_error(cli("--arch", "edsr-lite", "--arch-opt", "n_feats=abc", "--data", images, "--steps", 1,
                       "--run-dir", tmp_path / "r"), "n_feats", "'abc' is not an integer", code=2)
    one_line_error(cli("--arch", "edsr-lite", "--arch-opt", "n_feets=3", "--data", images, "--steps", 1,
                       "--run-dir", tmp_path / "r"), "no option 'n_feets'", code=2)


def test_unknown_config_key(tmp_path, images):
    cfg = tmp_path / "c.toml"
    cfg.write_text("learning_rate = 0.1\n")
    one_line_error(cli("--config", cfg, "--arch", "edsr-lite", "--data", images, "--steps", 1), "unknown key 'learning_rate'", code=2)


def test_scale_mismatch_between_paired_folders(tmp_path):
    root = tmp_path / "set"
    write_images(root / "HR", count=1)
    (root / "LR_bicubic" / "X4").mkdir(parents=True)
    one_line_error(cli(*TINY_ARGS, "--data", root, "--steps", 1, "--run-dir", tmp_path / "r"), "scale mismatch", "X4", "--scale is 2")


def test_precision_the_arch_is_unsafe_in(tmp_path, images):
    one_line_error(cli("--arch", "swinir-s", "--precision", "fp16", "--data", images, "--steps", 1, "--run-dir", tmp_path / "r"),
                   "swinir is not numerically safe in fp16", code=2)


def test_output_exists(tmp_path, images):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"precious")
    one_line_error(cli(*TINY_ARGS, "--data", images, "--steps", 1, "-o", out, "--run-dir", tmp_path / "r"), "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"


def test_run_folder_in_use_needs_resume(tmp_path, images):
    run = tmp_path / "run"
    assert cli(*TINY_ARGS, "--data", images, "--steps", 1, "--run-dir", run).exit_code == 0
    one_line_error(cli(*TINY_ARGS, "--data", images, "--steps", 2, "--run-dir", run), "already holds a run", "--resume auto")


def test_resume_of_a_run_made_with_another_architecture(tmp_path, images):
    run = tmp_path / "run"
    assert cli(*TINY_ARGS, "--data", images, "--steps", 2, "--run-dir", run).exit_code == 0
    before = sorted(p.read_bytes() for p in ck.list_checkpoints(run))
    one_line_error(cli("--arch", "rcan-lite", "--data", images, "--steps", 4, "--run-dir", run, "--resume", "auto"),
                   "cannot resume", "edsr x2", "rcan x2", code=2)
    assert sorted(p.read_bytes() for p in ck.list_checkpoints(run)) == before


def test_corrupted_checkpoint_falls_back_and_says_so(tmp_path, images):
    run = tmp_path / "run"
    assert cli(*TINY_ARGS, "--data", images, "--steps", 4, "--checkpoint-every", 2, "--run-dir", run).exit_code == 0
    latest = ck.list_checkpoints(run)[-1]
    latest.write_bytes(b"\x00" * 100)
    result = cli("--run-dir", run, "--resume", "auto", "--steps", 5, "--json")
    assert result.exit_code == 0, result.stderr
    assert "step-00000004.pt is unreadable" in result.stderr
    assert "falling back to the previous complete checkpoint step-00000002.pt" in result.stderr
    assert json.loads(result.stdout)["steps"] == 5


def test_explicit_corrupted_checkpoint_is_refused(tmp_path, images):
    run = tmp_path / "run"
    assert cli(*TINY_ARGS, "--data", images, "--steps", 2, "--run-dir", run).exit_code == 0
    bad = ck.list_checkpoints(run)[-1]
    bad.write_bytes(b"junk")
    one_line_error(cli("--resume", bad, "--steps", 3), "unreadable", "--resume auto")


def test_checkpoint_holds_everything_for_resume(tmp_path, images):
    run = tmp_path / "run"
    assert cli(*TINY_ARGS, "--data", images, "--steps", 2, "--ema", 0.9, "--run-dir", run).exit_code == 0
    state = torch.load(ck.list_checkpoints(run)[-1], weights_only=True)
    assert {"model", "optimizer", "scheduler", "ema", "rng", "data", "config", "arch", "elapsed"} <= set(state)
    assert {"torch", "numpy_keys", "python"} <= set(state["rng"][0])
    assert state["data"]["samples_seen"] == 8
