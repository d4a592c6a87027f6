"""``mipkd`` is the paper's method, ``mipkd-lite`` the cheap variant; the teacher cache matches a
live teacher where a live teacher can be matched; ``protocol = "paper"`` applies the paper's
training to any pair; a run that nobody gave a method says which one runs and why."""

from __future__ import annotations

import json
import warnings
from contextlib import nullcontext

import pytest
import torch
from cli_helpers import run_cli, write_training_photos
from distill_helpers import FAMILIES, batch, frozen_teacher, objective, small, weighted_total
from test_teacher_cache import batch_of, image_set

from srdistill.data.dataset import PatchDataset
from srdistill.distill.api import prepare_run
from srdistill.distill.methods.base import DistillWarning
from srdistill.distill.methods.mipkd import LITE, METHOD, PAPER_OPTIONS
from srdistill.distill.settings import DEFAULT_METHOD_NOTE, DistillSettings
from srdistill.distill.teacher import run_teacher
from srdistill.distill.teacher_cache import CacheUnavailable, check_cacheable, patch_deviation, receptive_radius
from srdistill.models import save_model
from srdistill.train.objective import TrainingData


# -- the names say what runs --------------------------------------------------------------------
def test_mipkd_defaults_are_the_papers_and_mipkd_lite_is_the_cheap_variant():
    paper = METHOD.options
    assert paper["encoder"] == "conv3" and paper["mixer_init"] == "random" and paper["latent"] > 0
    assert paper["l_feat"] == 1 and paper["l_ae"] > 0 and paper["l_block"] == 0.1 and paper["l_kd"] == 1
    assert paper["bpm_every"] == 1 and paper["route"] == "random" and paper["fpm_area"] == 1 and paper["mask_ratio"] == 0.5
    lite = LITE.options
    assert LITE.id == "mipkd-lite" and lite["bpm_every"] > 1 and lite["encoder"] == "linear" and lite["mixer_init"] == "fit"
    assert lite["l_feat"] == 0
    # Where the paper gives no value, the option's help says so (and why ours).
    for key in ("l_kd", "l_ae", "latent", "mask_ratio", "norm", "bpm_boundaries", "switch"):
        text = METHOD.option_help[key]
        assert any(word in text for word in ("silent", "not stated", "leaves it open", "not its weight")), key


@pytest.mark.parametrize("teacher_arch,student_arch", [("edsr", "edsr"), ("swinir", "edsr")])
@pytest.mark.parametrize("route", ["teacher", "student"])
def test_a_paper_training_step_trains_everything_on_its_path_and_not_the_teacher(teacher_arch, student_arch, route):
    teacher = frozen_teacher(teacher_arch, n_resblocks=4) if teacher_arch == "edsr" else frozen_teacher(teacher_arch)
    student = small(student_arch, n_feats=8)
    obj = objective("mipkd", teacher, student, route=route)
    assert obj.options == {**PAPER_OPTIONS, "route": route}
    extras = torch.nn.ModuleDict(obj.modules())
    params = {f"student.{n}": p for n, p in student.net.named_parameters() if p.requires_grad}
    params.update({n: p for n, p in extras.named_parameters() if p.requires_grad})
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    teacher_before = {k: v.clone() for k, v in teacher.net.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.net.state_dict().items()}
    (k, nets), = obj.plan_routes(0)  # the step about to run
    student.net.train()
    terms = obj.losses(batch(), student.net)
    assert {"l1", "kd", "fpm", "ae", "bpm"} <= set(terms) and nets == [route]
    optimizer.zero_grad()
    weighted_total(obj, terms).backward()
    # Off the path: the adapters of boundaries not routed into the student this step.
    off_path = {n for n in params if n.startswith("adapters.") and not (route == "student" and n.startswith(f"adapters.{k}."))}
    missing = {n for n, p in params.items() if p.grad is None or float(p.grad.abs().sum()) == 0} - off_path
    assert not missing, sorted(missing)[:5]
    assert all(p.grad is None for p in teacher.net.parameters())
    optimizer.step()
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.net.state_dict().items())
    assert not all(torch.equal(student_before[k], v) for k, v in student.net.state_dict().items())


def test_a_routed_step_takes_its_target_from_the_live_teacher_on_the_patch():
    # Teacher encoder and decoder fitted at the identity and a mask all teacher: the routed
    # network is the teacher itself, so its loss against the teacher on the same patch is zero.
    images = image_set()
    dataset = PatchDataset(images, patch_size=16, seed=3)
    teacher, student = frozen_teacher("edsr", n_resblocks=4), small("edsr", n_feats=8)
    obj = objective("mipkd-lite", teacher, student, route="teacher", mask_ratio=1.0, bpm_every=2, bpm_boundaries="all")
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    assert obj.signals.kind == "cache"
    b = batch_of(dataset, 8, 4)
    cached, live = obj.signals(b).output, run_teacher(teacher, b.lr, []).output
    assert float((cached - live).abs().max()) > 1e-3  # the cache has the image's context at the borders
    student.net.train()
    routed = obj.losses(b, student.net)
    assert float(routed["bpm"].detach()) < 1e-5
    with torch.no_grad():
        assert abs(float(routed["kd"]) - float((student.net(b.lr) - live).abs().mean())) < 1e-4  # live this step
    plain = obj.losses(batch_of(dataset, 12, 4), student.net)
    assert "bpm" not in plain  # no routed pass, no stale value


def test_the_paper_configuration_runs_its_teacher_live_instead_of_building_an_unread_cache():
    dataset = PatchDataset(image_set(), patch_size=16, seed=3)
    teacher, student = frozen_teacher("edsr", n_resblocks=4), small("edsr", n_feats=8)
    obj = objective("mipkd", teacher, student)
    obj.teacher_cache_mode = "auto"
    notes = []
    data = TrainingData(dataset, torch.device("cpu"), nullcontext)
    data.note = notes.append
    obj.prepare(data)
    assert obj.signals.kind == "live" and "routes every step" in notes[0]


# -- the cache against a live teacher ---------------------------------------------------------------
@pytest.mark.parametrize("arch", FAMILIES)
def test_the_cache_matches_a_live_teacher_on_the_patch_interior_or_refuses(arch):
    teacher = frozen_teacher(arch)
    blocks = list(teacher.blocks)
    try:
        halo = check_cacheable(teacher, blocks)
    except CacheUnavailable as refused:
        # Refused only for a teacher a cache cannot reproduce: unbounded field, or not a local operator.
        radius = receptive_radius(teacher)
        assert radius is None or patch_deviation(teacher, blocks, radius + 8) > 1e-4, str(refused)
        return
    # Tiles far smaller than the image: every seam is crossed; storage is float16 / bfloat16.
    assert patch_deviation(teacher, blocks, halo, tile=32) < 1e-2


def test_rcan_channel_attention_is_global_so_its_teacher_runs_live():
    teacher, student = frozen_teacher("rcan"), small("edsr", n_feats=8)
    assert receptive_radius(teacher) is None
    obj = objective("logits", teacher, student)
    obj.teacher_cache_mode = "memory"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj.prepare(TrainingData(PatchDataset(image_set(), patch_size=16, seed=0), torch.device("cpu"), nullcontext))
    assert obj.signals.kind == "live"
    assert any(issubclass(w.category, DistillWarning) and "global" in str(w.message) for w in caught)


def test_the_tile_halo_follows_the_teachers_receptive_field():
    teacher = frozen_teacher("edsr", n_resblocks=10)  # about 24 LR pixels of field
    radius = receptive_radius(teacher)
    assert 20 <= radius <= 28
    halo = check_cacheable(teacher, [])
    assert halo >= radius
    # In float32, a patch cut 8 pixels from where the answer is read (the width of a seam with a
    # narrow halo) changes the answer; one cut a halo away does not.
    assert patch_deviation(teacher, [], 8) > 1e-4 > 1e-5 > patch_deviation(teacher, [], halo)


# -- protocol and default method -------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    save_model(small("edsr"), root / "teacher.safetensors")
    write_training_photos(root / "photos", [f"im{i}.png" for i in range(2)])
    return root


def test_protocol_paper_applies_the_papers_training_under_explicit_options(files, tmp_path):
    teacher = str(files / "teacher.safetensors")
    run = prepare_run(DistillSettings(teacher=teacher, student_arch="edsr-lite", protocol="paper"),
                      {"data": str(files / "photos"), "run_dir": str(tmp_path / "a")})
    c = run.config
    assert (c.patch_size, c.batch_size, c.lr, c.steps, c.schedule, c.milestones, c.gamma) == (48, 16, 1e-4, 250_000, "multistep", [0.8], 0.5)
    assert run.plan.method.id == "mipkd" and run.plan.options == PAPER_OPTIONS and run.settings.teacher_cache == "off"
    assert run.method_note is None
    # Flags and the config file's own keys win over the protocol, key by key.
    config = tmp_path / "paper.toml"
    config.write_text(f'batch_size = 4\n[distill]\nteacher = "{teacher}"\nstudent_arch = "edsr-lite"\nprotocol = "paper"\n'
                      'method_opt = { bpm_every = 2 }\n')
    run = prepare_run(DistillSettings(method_options={"l_feat": 0.5}), {"data": str(files / "photos"), "steps": 10,
                      "run_dir": str(tmp_path / "b")}, config_file=config)
    c = run.config
    assert (c.batch_size, c.steps, c.lr, c.patch_size) == (4, 10, 1e-4, 48)
    assert run.plan.options == {**PAPER_OPTIONS, "bpm_every": 2, "l_feat": 0.5}


def test_a_run_without_a_method_says_first_which_runs_and_why(files):
    r = run_cli("distill", "--teacher", files / "teacher.safetensors", "--student-arch", "edsr-lite", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("method logits (the default)") and "mipkd" in r.stdout.splitlines()[0]
    assert DEFAULT_METHOD_NOTE.startswith("method logits")
    r = run_cli("distill", "--teacher", files / "teacher.safetensors", "--student-arch", "edsr-lite", "--method", "mipkd",
                "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["method"] == "mipkd" and plan["options"] == json.loads(json.dumps(PAPER_OPTIONS))
