"""What a run tells the user: progress notes print plain, only things to act on say "warning:"."""

from __future__ import annotations

from cli_helpers import run_cli, write_training_photos

from srdistill.models import build_model, save_model


def test_teacher_cache_line_is_information_and_an_ignored_option_is_a_warning(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    save_model(build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 2}, seed=0), teacher)
    photos = write_training_photos(tmp_path / "photos", ["a.png", "b.png"])
    # logits uses the teacher's output only: it caches it, and --K (features) is ignored with a warning.
    r = run_cli("distill", "--teacher", teacher, "--student-arch", "edsr-lite", "--student-opt", "n_feats=8",
                "--student-opt", "n_resblocks=1", "--method", "logits", "--K", "2", "--data", photos, "--steps", "1",
                "--batch-size", "2", "--patch-size", "8", "--threads", "1", "--precision", "fp32", "--run-dir", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    caching = [line for line in lines if "caching the teacher's output" in line]
    assert len(caching) == 1 and not caching[0].startswith("warning:"), r.stderr
    ignored = [line for line in lines if "uses no features" in line]
    assert len(ignored) == 1 and ignored[0].startswith("warning:"), r.stderr
