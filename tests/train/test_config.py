"""Configuration as data: TOML with the flag names, CLI overrides, unknown keys rejected."""

from __future__ import annotations

import pytest

from srdistill.errors import UsageError
from srdistill.train.config import TrainConfig, build_config, parse_duration, read_toml, resolve, to_toml, typed_values


def test_toml_and_flags_layer_with_flags_winning(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text('arch = "edsr-lite"\ndata = "photos"\nbatch-size = 8\nsteps = 100\nlr = 1e-4\n[arch_opt]\nn_feats = 16\n')
    config = build_config({"batch_size": 4, "arch_opt": {"n_resblocks": "2"}}, cfg)
    assert config.batch_size == 4  # the flag wins
    assert config.lr == 1e-4 and config.steps == 100  # the file fills in
    assert config.arch_opt == {"n_feats": 16, "n_resblocks": "2"}  # tables merge key by key


def test_unknown_key_is_rejected_with_a_hint(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text('arch = "edsr-lite"\nbatch_sise = 8\n')
    with pytest.raises(UsageError, match=r"train.toml: unknown key 'batch_sise' \(did you mean batch_size\?\)"):
        read_toml(cfg)


def test_wrong_types_name_the_key():
    with pytest.raises(UsageError, match="steps = 'many' is not an integer"):
        typed_values({"steps": "many"}, "command line")
    with pytest.raises(UsageError, match="channels_last = 'maybe' is not true or false"):
        typed_values({"channels_last": "maybe"}, "x")


@pytest.mark.parametrize("text,seconds", [("90", 90), ("30m", 1800), ("1h30m", 5400), ("2h", 7200), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(UsageError, match="max_time = 'soon' is not a duration"):
        typed_values({"max-time": "soon"}, "command line")


def test_saved_config_reads_back_identically(tmp_path):
    config = resolve({"arch": "edsr-lite", "data": "d", "steps": 5, "arch_opt": {"n_feats": 8}, "milestones": [0.3, 0.6]})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config.stored()))
    again = resolve(read_toml(path))
    assert again.stored() == config.stored()


def test_missing_essentials_fail_before_any_work():
    with pytest.raises(UsageError, match="no architecture"):
        resolve({"data": "d", "steps": 1})
    with pytest.raises(UsageError, match="no training budget"):
        resolve({"arch": "edsr-lite", "data": "d"})
    with pytest.raises(UsageError, match="schedule must be one of cosine, multistep"):
        resolve({"arch": "edsr-lite", "data": "d", "steps": 1, "schedule": "linear"})


def test_resume_takes_the_saved_run_config_as_base(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = resolve({"arch": "edsr-lite", "data": "d", "steps": 10, "lr": 3e-4, "run_dir": str(run)})
    (run / "config.toml").write_text(to_toml(saved.stored()))
    config = build_config({"run_dir": str(run), "resume": "auto", "steps": 20})
    assert (config.arch, config.lr, config.steps, config.resume) == ("edsr-lite", 3e-4, 20, "auto")
    with pytest.raises(UsageError, match="resume auto needs run_dir"):
        build_config({"resume": "auto"})


def test_stored_config_leaves_out_the_invocation():
    stored = TrainConfig(arch="x", data="d", steps=1, resume="auto", overwrite=True).stored()
    assert "resume" not in stored and "overwrite" not in stored and "json" not in stored


def test_a_command_built_on_the_engine_adds_its_own_keys(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class DistillConfig(TrainConfig):
        method: str = "mipkd"
        mask_ratio: float = 0.5

    cfg = tmp_path / "d.toml"
    cfg.write_text('arch = "edsr-lite"\ndata = "d"\nsteps = 3\nmask-ratio = 0.25\n')
    config = build_config({"method": "logits"}, cfg, cls=DistillConfig)
    assert isinstance(config, DistillConfig) and (config.method, config.mask_ratio) == ("logits", 0.25)
    with pytest.raises(UsageError, match="unknown key 'mask-ratio'"):
        build_config({}, cfg)  # plain `train` does not know it
