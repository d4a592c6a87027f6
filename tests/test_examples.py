"""Every file in examples/ runs, so the examples cannot rot: the scripts run, and every config in
examples/configs is read by the real config reader and planned, [distill] table included, by the
real ``srdistill distill --config FILE --dry-run`` (with a small stand-in teacher of the same family)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli, write_training_photos

import srdistill
from srdistill.errors import UsageError
from srdistill.archs.registry import ARCHS
from srdistill.train.config import build_config
from srdistill.train.schedules import lr_at

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
CONFIGS = sorted((REPO / "examples" / "configs").glob("*.toml"))
PAPER_CONFIGS = [c for c in CONFIGS if c.name.startswith("paper-")]
# Run by their own test below, with explicit paths and tiny budgets.
OWN_TEST = {"distill_with_the_api.py"}

# The paper's MiPKD options, as typed by the method (shared/docs/MIPKD.md): mipkd's defaults.
PAPER_OPTIONS = {
    "l_kd": 1.0, "l_feat": 1.0, "l_ae": 1.0, "l_block": 0.1, "latent": 64, "encoder": "conv3",
    "mixer_init": "random", "mask_ratio": 0.5, "fpm_area": 1.0, "bpm_every": 1, "route": "random",
}
# Stand-in teachers: the family's small test size, with the real teacher's number of body blocks
# (SwinIR-M 6 RSTBs, RCAN 10 groups, EDSR 32 blocks) so the boundaries are those of the real run.
STAND_INS = {
    "swinir": {"depths": (1,) * 6, "num_heads": (2,) * 6},
    "rcan": {"n_resgroups": 10, "n_resblocks": 1},
    "edsr": {"n_resblocks": 32},
}
# (teacher blocks, student blocks) that each config must plan.
EXPECTED_BOUNDARIES = {
    "paper-swinir-m-to-swinir-s.toml": (["layers.2", "layers.5"], ["layers.1", "layers.3"]),
    "paper-rcan-to-rcan-lite.toml": (["body.4", "body.9"], ["body.4", "body.9"]),
    "paper-edsr-to-edsr-thin.toml": (["body.7", "body.15", "body.23", "body.31"],) * 2,
    "swinir-to-edsr-lite.toml": (["layers.2", "layers.5"], ["body.3", "body.7"]),
}
# Student sizes the paper states (shared/docs/MIPKD.md): SwinIR-S 1.2 M, RCAN 10 x 6 5.2 M.
PAPER_STUDENT_PARAMS = {"paper-swinir-m-to-swinir-s.toml": 1.2e6, "paper-rcan-to-rcan-lite.toml": 5.2e6}
# EDSR 256 ch / 32 blocks -> 64 ch / 32 blocks: only the width changes.
PAPER_STUDENT_HPARAMS = {"paper-edsr-to-edsr-thin.toml": {"n_feats": 64, "n_resblocks": 32}}


def test_there_are_examples():
    assert len(EXAMPLES) >= 3
    assert set(EXPECTED_BOUNDARIES) == {c.name for c in CONFIGS}, "add the new config's boundaries above"


@pytest.mark.parametrize("script", [s for s in EXAMPLES if s.name not in OWN_TEST], ids=lambda p: p.name)
def test_example_runs(script):
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A tiny DIV2K-style HR folder."""
    return write_training_photos(tmp_path_factory.mktemp("data") / "DIV2K_train_HR", [f"{i + 1:04d}.png" for i in range(3)])


def small_model(arch: str, **overrides):
    return srdistill.build_model(arch, scale=4, hparams={**ARCHS.get(arch).small, **overrides})


def test_the_api_example_distils(tmp_path, images):
    teacher = srdistill.save_model(small_model("edsr"), tmp_path / "teacher.safetensors")
    out = tmp_path / "student.safetensors"
    script = REPO / "examples" / "distill_with_the_api.py"
    args = ["--teacher", teacher, "--student-arch", "edsr-lite", "--student-opt", "n_feats=8", "--data", images,
            "--steps", "2", "--batch-size", "2", "--patch-size", "16", "--threads", "1",
            "--run-dir", tmp_path / "run", "--output", out]
    result = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "boundary 0: teacher body.0" in result.stdout and "trained 2 steps" in result.stdout
    student = srdistill.load_model(out)
    assert student.arch == "edsr" and student.hparams["n_feats"] == 8 and student.hparams["n_resblocks"] == 8
    record = student.metadata["provenance"]
    assert record["method"] == "mipkd" and record["steps"] == 2 and record["teacher"]["arch"] == "edsr"
    assert str(out) in result.stdout


# -- examples/configs ----------------------------------------------------------------------------
def documented_command(config: Path) -> list[str]:
    """The torchrun command in the config's leading comment block, as argv."""
    lines = [line[1:].strip() for line in config.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    return shlex.split(next(line for line in lines if line.startswith("torchrun ")))


def distill_table(config: Path) -> dict:
    """The config's [distill] table: teacher, student and method, as `srdistill distill` reads them."""
    return tomllib.loads(config.read_text(encoding="utf-8"))["distill"]


def effective_config(config: Path, teacher: Path):
    """What `srdistill distill --config FILE` trains with: the file's keys over its protocol's."""
    from srdistill.distill.api import prepare_run
    from srdistill.distill.settings import DistillSettings

    return prepare_run(DistillSettings(teacher=str(teacher)), {}, config_file=config)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_passes_the_real_reader(config, stand_in_teachers):
    # The whole run is in the file: the command names nothing but the file.
    rel = config.relative_to(REPO).as_posix()
    assert documented_command(config) == ["torchrun", "--nproc_per_node=4", "-m", "srdistill", "distill", "--config", rel]
    table = distill_table(config)
    assert Path(table["teacher"]).name == table["teacher"], "the teacher is the downloaded file's name"
    # What `srdistill distill --config` does with the file before training.
    cfg = effective_config(config, stand_in_teachers[family_of(table["teacher"])]).config
    assert Path(cfg.data).name == "DIV2K_train_HR" and Path(cfg.val_data).name == "Set5"
    assert cfg.patch_size == 48 and cfg.batch_size == 16 and cfg.steps == 250_000
    text = config.read_text(encoding="utf-8")
    assert text.startswith("#") and "global batch" in text and "x 4 GPUs" in text and "--teacher PATH" in text


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.name)
def test_paper_configs_follow_the_protocol(config, stand_in_teachers):
    table = distill_table(config)
    assert table["protocol"] == "paper" and "method_opt" not in table  # thin: the protocol says the rest
    run = effective_config(config, stand_in_teachers[family_of(table["teacher"])])
    cfg = run.config
    assert cfg.lr == 1e-4 and cfg.schedule == "multistep" and cfg.ema == 0.999 and cfg.precision == "fp32"
    # The milestones are fractions of the run: halved exactly at step 200k of 250k.
    lrs = [lr_at(base_lr=cfg.lr, schedule=cfg.schedule, progress=s / cfg.steps, step=s, milestones=cfg.milestones,
                 gamma=cfg.gamma) for s in (0, 199_999, 200_000, 249_999)]
    assert lrs == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5])
    assert run.plan.method.id == "mipkd" and run.settings.teacher_cache == "off"
    assert {key: run.plan.options[key] for key in PAPER_OPTIONS} == PAPER_OPTIONS


@pytest.fixture(scope="module")
def stand_in_teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {arch: srdistill.save_model(small_model(arch, **extra), root / f"{arch}-x4.safetensors")
            for arch, extra in STAND_INS.items()}


def family_of(teacher_file: str) -> str:
    (family,) = [arch for arch in STAND_INS if arch in teacher_file.lower()]
    return family


def dry_run(config: Path, teacher: Path):
    """`srdistill distill --config FILE --dry-run --json`, the teacher path replaced by a stand-in."""
    return run_cli("distill", "--config", config, "--teacher", teacher, "--dry-run", "--json",
                   env={"OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_documented_command_plans(config, stand_in_teachers):
    table = distill_table(config)
    r = dry_run(config, stand_in_teachers[family_of(table["teacher"])])
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    # Method, its options, K and the student all come from the file's [distill] table.
    assert plan["method"] == table.get("method", "mipkd" if table.get("protocol") == "paper" else "logits")
    given = table.get("method_opt", {})
    assert {key: plan["options"][key] for key in given} == given
    if config in PAPER_CONFIGS:
        assert {key: plan["options"][key] for key in PAPER_OPTIONS} == PAPER_OPTIONS
    teacher_blocks, student_blocks = EXPECTED_BOUNDARIES[config.name]
    assert [b["teacher_block"] for b in plan["boundaries"]] == teacher_blocks
    assert [b["student_block"] for b in plan["boundaries"]] == student_blocks
    assert plan["boundary_source"] == ("K" if "K" in table else "auto")
    if "K" in table:
        assert len(plan["boundaries"]) == table["K"]
    # The student is the table's preset with its student_opt applied, nothing else.
    spec, preset = srdistill.find_preset(table["student_arch"])
    expected = json.loads(json.dumps(spec.resolve(table.get("student_opt"), preset=preset)))
    assert plan["student"]["arch"] == spec.id and plan["student"]["hparams"] == expected
    if config.name in PAPER_STUDENT_PARAMS:
        assert plan["student"]["params"] == pytest.approx(PAPER_STUDENT_PARAMS[config.name], rel=0.05)
    for key, value in PAPER_STUDENT_HPARAMS.get(config.name, {}).items():
        assert plan["student"]["hparams"][key] == value


def test_a_misspelled_key_or_a_bad_value_fails_the_reader(tmp_path, stand_in_teachers):
    config = REPO / "examples" / "configs" / "paper-rcan-to-rcan-lite.toml"
    text = config.read_text(encoding="utf-8")
    typo = tmp_path / "typo.toml"
    typo.write_text(text.replace("\nval_every =", "\nval_evry ="), encoding="utf-8")
    with pytest.raises(UsageError, match="unknown key 'val_evry'"):
        build_config({"arch": "rcan-lite", "scale": 4}, typo, tables=("distill",))
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("\nval_every = 5000", "\nval_every = -1"), encoding="utf-8")
    with pytest.raises(UsageError, match="val_every must be 0"):
        build_config({"arch": "rcan-lite", "scale": 4, "steps": 10}, bad, tables=("distill",))
    # A typo inside [distill] stops the run too, rather than silently falling back to a default.
    distill_typo = tmp_path / "distill-typo.toml"
    assert "\nprotocol = " in text
    distill_typo.write_text(text.replace("\nprotocol = ", "\nprotocl = "), encoding="utf-8")
    r = dry_run(distill_typo, stand_in_teachers["rcan"])
    assert_one_line_error(r, str(distill_typo), "protocl", "[distill]", code=2)
