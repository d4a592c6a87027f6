"""Every loss term of every method reaches the parameters it should train, and nothing else.

Public KD-for-SR code has shipped feature losses rebuilt from detached values that trained
nothing; these tests take each term alone and ask autograd which parameters it reaches.
"""

from __future__ import annotations

import pytest
import torch
from distill_helpers import METHOD_IDS, batch, frozen_teacher, objective, small, train_steps, weighted_total

from srdistill.distill.teacher import run_teacher


def reached(term: torch.Tensor, named: dict[str, torch.nn.Parameter]) -> set[str]:
    """Names of the parameters that get a non-zero gradient from ``term``."""
    names = list(named)
    grads = torch.autograd.grad(term, [named[n] for n in names], retain_graph=True, allow_unused=True)
    return {n for n, g in zip(names, grads) if g is not None and float(g.abs().sum()) > 0}


def parameter_table(obj, student):
    named = {f"student.{n}": p for n, p in student.net.named_parameters()}
    for name, module in obj.modules().items():
        named.update({f"{name}.{n}": p for n, p in module.named_parameters()})
    return {n: p for n, p in named.items() if p.requires_grad}  # EDSR's mean shifts are fixed


def groups(names: set[str]) -> set[str]:
    """``mixers.0.decode.0.weight`` -> ``mixers.0.decode``; student params -> ``student``,
    plus ``student.first`` when the first body block is reached (a boundary-0 feature loss must)."""
    out = set()
    for n in names:
        if n.startswith("student."):
            out.add("student")
            if n.startswith("student.body.0."):
                out.add("student.first")
        else:
            parts = n.split(".")
            out.add(".".join(parts[:3]) if parts[0] == "mixers" else ".".join(parts[:2]))
    return out


def terms_and_params(method, teacher="edsr", student="edsr", **options):
    t = frozen_teacher(teacher, n_resblocks=4) if teacher == "edsr" else frozen_teacher(teacher)
    s = small(student, n_feats=8) if student == "edsr" else small(student)
    obj = objective(method, t, s, **options)
    s.net.train()
    terms = obj.losses(batch(), s.net)
    return obj, s, t, terms, parameter_table(obj, s)


def test_pixel_and_kd_terms_train_the_student_only():
    for method in METHOD_IDS:
        obj, s, t, terms, named = terms_and_params(method)
        for term in ("l1", "kd"):
            if term in terms:
                assert groups(reached(terms[term], named)) == {"student", "student.first"}, (method, term)


def test_fitnet_hint_trains_student_and_regressors():
    obj, s, t, terms, named = terms_and_params("fitnet")
    assert groups(reached(terms["feat"], named)) == {"student", "student.first", "regressors.0", "regressors.1"}


def test_fakd_affinity_trains_the_student():
    obj, s, t, terms, named = terms_and_params("fakd")
    assert groups(reached(terms["fa"], named)) == {"student", "student.first"}


def test_mipkd_feature_mixer_and_autoencoder_terms():
    # Randomly initialised mixers: a fitted start sits exactly at the optimum of the teacher
    # half (E_T = D = identity), where L1 has a zero gradient for E_T until the student moves.
    obj, s, t, terms, named = terms_and_params("mipkd", bpm_every=0, encoder="conv1", mixer_init="random", l_feat=0.02)
    everything = {f"mixers.{k}.{part}" for k in (0, 1) for part in ("encode_teacher", "encode_student", "decode")}
    assert groups(reached(terms["fpm"], named)) == {"student", "student.first"} | everything
    # The auto-encoder loss sees the teacher alone: it trains E_T and D, never the student.
    assert groups(reached(terms["ae"], named)) == {f"mixers.{k}.{p}" for k in (0, 1) for p in ("encode_teacher", "decode")}
    assert "bpm" not in terms


def test_without_the_feature_loss_mipkd_lite_mixes_only_on_block_mixer_steps():
    # l_feat=0 (mipkd-lite): the mixers serve only the Block Prior Mixer, so a step without a
    # routed pass costs what a logits-KD step costs: nothing mixed, normalised or differentiated.
    t, s = frozen_teacher("edsr", n_resblocks=4), small("edsr", n_feats=8)
    obj = objective("mipkd-lite", t, s, bpm_every=3, bpm_boundaries="all", encoder="conv1", mixer_init="random")
    assert obj.options["l_feat"] == 0 and obj.weights["fpm"] == 0 and obj.weights["ae"] == 0
    named = parameter_table(obj, s)
    mixers = {f"mixers.{k}.{p}" for k in (0, 1) for p in ("encode_teacher", "encode_student", "decode")}
    s.net.train()
    kinds = []
    for step in range(6):
        seen = int(obj.norm_teacher[0].seen)
        terms = obj.losses(batch(seed=step), s.net)
        routed = "bpm" in terms
        kinds.append(routed)
        assert ("fpm" in terms) is routed and (int(obj.norm_teacher[0].seen) > seen) is routed
        if routed:
            assert terms["bpm"].requires_grad and mixers <= groups(reached(terms["bpm"], named))
        else:
            # Nothing stale: the step's loss holds only what it computed (and logs only that).
            assert set(terms) == {"l1", "kd"}
            assert float(weighted_total(obj, terms)) == float(terms["l1"] + obj.weights["kd"] * terms["kd"])
    assert kinds == [True, False, False, True, False, False]


@pytest.mark.parametrize("route", ["teacher", "student"])
def test_mipkd_block_mixer_trains_mixers_adapters_and_student_through_either_network(route):
    obj, s, t, terms, named = terms_and_params("mipkd", route=route, bpm_boundaries="all")
    got = groups(reached(terms["bpm"], named))
    mixers = {f"mixers.{k}.{p}" for k in (0, 1) for p in ("encode_teacher", "encode_student", "decode")}
    assert {"student", "student.first"} | mixers <= got
    # Widths differ (16 -> 8): the student route enters through the adapters, the teacher route never does.
    assert ({"adapters.0", "adapters.1"} <= got) is (route == "student")
    assert not any(g.startswith("adapters") for g in got) or route == "student"


def test_mipkd_switching_at_every_boundary_still_reaches_everything_on_its_path():
    obj, s, t, terms, named = terms_and_params("mipkd", route="student", switch="each", bpm_boundaries="all")
    got = groups(reached(terms["bpm"], named))
    assert {"student", "student.first", "adapters.0", "mixers.0.decode"} <= got


@pytest.mark.parametrize("method", METHOD_IDS)
def test_the_teacher_gets_no_gradient_and_does_not_change(method):
    teacher, student = frozen_teacher("swinir"), small("edsr", n_feats=8)
    before = {k: v.clone() for k, v in teacher.net.state_dict().items()}
    train_steps(objective(method, teacher, student), student, steps=2)
    assert all(p.grad is None for p in teacher.net.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.net.state_dict().items())


def test_teacher_signals_carry_no_graph_even_if_the_teacher_were_trainable():
    teacher = small("rcan")
    teacher.net.requires_grad_(True)
    got = run_teacher(teacher, torch.rand(1, 3, 16, 16), teacher.blocks)
    assert not got.output.requires_grad and not any(f.requires_grad for f in got.features)


def test_a_whole_mipkd_step_reaches_every_trainable_parameter():
    obj, s, t, terms, named = terms_and_params("mipkd", route="student", bpm_boundaries="all")
    total = weighted_total(obj, terms)
    missing = set(named) - reached(total, named)
    # The upsampler of EDSR gets gradients from the output terms; nothing is left out.
    assert not missing, sorted(missing)[:5]


def test_fitted_mipkd_starts_fitted_and_still_trains_everything():
    obj, s, t, terms, named = terms_and_params("mipkd-lite", l_feat=1.0, route="student", bpm_boundaries="all", bpm_every=1)
    assert float(terms["ae"].detach()) < 1e-4  # identity teacher encoder and decoder
    assert int(obj.fitted.step) == 1
    got = groups(reached(terms["fpm"], named))
    assert {"student", "student.first", "mixers.0.encode_student", "mixers.0.decode"} <= got
    assert {"adapters.0", "adapters.1"} <= groups(reached(terms["bpm"], named))
    before = obj.mixers[0].encode_student.weight.clone()
    obj.losses(batch(seed=5), s.net)  # no second fit
    assert torch.equal(before, obj.mixers[0].encode_student.weight)


def test_fitted_start_needs_linear_mixers():
    from srdistill.errors import UsageError

    with pytest.raises(UsageError, match="mixer_init: fit needs encoder=linear"):
        terms_and_params("mipkd", mixer_init="fit", encoder="conv1")
