"""Teacher signals cached per training image line up exactly with the data stream."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from distill_helpers import frozen_teacher, objective, small

from srdistill.data.dataset import ImageSet, PatchDataset, TrainImage
from srdistill.data.folders import ImagePair
from srdistill.train.objective import TrainingData
from srdistill.distill.teacher import run_teacher
from srdistill.distill.teacher_cache import apply_transform, build_cache, lr_chw, teacher_on_image

SCALE, PATCH = 4, 16


def image_set(sizes=((40, 52), (36, 47), (64, 34))) -> ImageSet:
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate(sizes):
        # The data module's layout: h x w x 3 uint8.
        lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        hr = rng.integers(0, 256, (h * SCALE, w * SCALE, 3), dtype=np.uint8)
        images.append(TrainImage(f"im{i}", (h * SCALE, w * SCALE), hr, lr))
    pairs = [ImagePair(Path(f"im{i}.png"), None) for i in range(len(sizes))]
    return ImageSet(pairs, images, SCALE, 1.0, True)


def batch_of(dataset: PatchDataset, start: int, n: int):
    """A batch exactly as the engine's loader makes it."""
    from srdistill.data.dataset import collate_patches
    from srdistill.train.objective import Batch

    raw = collate_patches([dataset[i] for i in range(start, start + n)])
    return Batch(raw["lr"].float() / 255, raw["hr"].float() / 255, torch.as_tensor(raw["index"]), torch.as_tensor(raw["image"]))


def test_torch_transform_matches_the_data_streams():
    from srdistill.data.dataset import apply_transform as numpy_transform

    x = np.arange(4 * 5 * 3).reshape(4, 5, 3)  # h x w x c, as the data module holds images
    for code in range(8):
        ours = apply_transform(torch.from_numpy(x).permute(2, 0, 1), code)  # on c x h x w
        assert np.array_equal(ours.permute(1, 2, 0).numpy(), numpy_transform(x, code))


@pytest.mark.parametrize("arch", ["edsr", "swinir"])
def test_tiled_teacher_equals_the_whole_image_pass(arch):
    teacher = frozen_teacher(arch)
    lr = torch.rand(1, 3, 37, 45)
    whole = run_teacher(teacher, lr, teacher.blocks)
    tiled = teacher_on_image(teacher, lr, teacher.blocks, tile=16, pad=16)
    # A small EDSR sees ~8 LR pixels, inside the 16-pixel halo: tiles are exact. Attention
    # (SwinIR) reaches further, so only closeness is expected there.
    tol = 1e-3 if arch == "edsr" else 0.05
    assert (tiled.output.float() - whole.output[0]).abs().max() < tol
    for cached, full in zip(tiled.features, whole.features):
        rel = (cached.float() - full[0]).abs().max() / full.abs().max()
        assert rel < 0.02 if arch == "edsr" else rel < 0.1


def test_cached_signals_are_the_teacher_on_the_image_cropped_like_each_patch():
    images = image_set()
    dataset = PatchDataset(images, patch_size=PATCH, seed=5)
    teacher, student = frozen_teacher("edsr"), small("edsr", n_feats=8)
    obj = objective("fitnet", teacher, student)
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    assert obj.signals.kind == "cache" and obj.describe()["teacher_signal"] == "cache"
    b = batch_of(dataset, 40, 6)
    got = obj.teacher_signal(b)
    assert got.output.shape == (6, 3, PATCH * SCALE, PATCH * SCALE)
    for i, index in enumerate(b.index.tolist()):
        plan = dataset.plan(index)
        lr = lr_chw(images.images[plan.image].lr).float().unsqueeze(0) / 255
        whole = run_teacher(teacher, lr, teacher.blocks)
        s, t, l = SCALE, plan.top, plan.left
        out = apply_transform(whole.output[0, :, t * s : (t + PATCH) * s, l * s : (l + PATCH) * s], plan.transform)
        assert (got.output[i] - out).abs().max() < 2e-3  # float16 storage
        feat = apply_transform(whole.features[1][0, :, t : t + PATCH, l : l + PATCH], plan.transform)
        assert (got.features[1][i] - feat).abs().max() <= 0.01 * feat.abs().max()  # bfloat16 storage


def test_away_from_the_patch_border_the_cached_and_live_teacher_agree():
    images = image_set()
    # No flips: an untrained teacher is far from flip-equivariant (a trained one nearly is).
    dataset = PatchDataset(images, patch_size=32, seed=1, augment=False)
    obj = objective("logits", frozen_teacher("edsr"), small("edsr"))
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    b = batch_of(dataset, 0, 4)
    cached, live = obj.teacher_signal(b), run_teacher(obj.teacher, b.lr, [])
    inner = slice(10 * SCALE, -10 * SCALE)  # the small EDSR sees about 8 LR pixels
    assert (live.output[..., inner, inner] - cached.output[..., inner, inner]).abs().max() < 2e-3
    assert (live.output - cached.output).abs().max() > 1e-2  # at the border they differ


def test_a_cache_out_of_step_with_the_data_is_detected():
    images = image_set()
    dataset = PatchDataset(images, patch_size=PATCH, seed=5)
    obj = objective("logits", frozen_teacher("edsr"), small("edsr"))
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(PatchDataset(images, patch_size=PATCH, seed=6), torch.device("cpu"), nullcontext))
    with pytest.raises(RuntimeError, match="does not line up"):
        obj.teacher_signal(batch_of(dataset, 0, 2))


def test_cache_off_and_featureless_methods():
    images = image_set()
    dataset = PatchDataset(images, patch_size=PATCH, seed=0)
    obj = objective("logits", frozen_teacher("edsr"), small("edsr"))
    obj.teacher_cache_mode = "off"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    assert obj.signals.kind == "live"
    scratch = objective("scratch", frozen_teacher("edsr"), small("edsr"))
    scratch.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    assert scratch.signals is None and scratch.frozen() == {}
    cache = build_cache(frozen_teacher("edsr"), [], lambda i: images.images[i].lr, 3, device=torch.device("cpu"), autocast=nullcontext)
    assert len(cache.images) == 3 and cache.images[0].features == []


def test_a_cache_directory_is_reused_by_the_next_run(tmp_path):
    from srdistill.distill import DistillContext, match_boundaries
    from srdistill.distill.registry import get_method

    images = image_set()
    dataset = PatchDataset(images, patch_size=PATCH, seed=2)
    teacher, student = frozen_teacher("edsr", n_resblocks=4), small("edsr", n_feats=8)  # boundaries body.1, body.3
    notes = []

    def prepared():
        context = DistillContext(teacher, student, match_boundaries(teacher, student), teacher_cache="memory",
                                 teacher_cache_dir=str(tmp_path), teacher_sha256="0" * 64)
        obj = get_method("fitnet").create(context)
        obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext, note=notes.append))
        return obj

    first = prepared()
    files = list(tmp_path.glob("teacher-*.safetensors"))
    assert len(files) == 1 and "caching" in notes[-1]
    second = prepared()
    assert notes[-1].startswith("teacher signals read from")
    b = batch_of(dataset, 3, 4)
    a, c = first.teacher_signal(b), second.teacher_signal(b)
    assert torch.equal(a.output, c.output) and all(torch.equal(x, y) for x, y in zip(a.features, c.features))
    # Fewer blocks (logits needs none): the same file serves. Other blocks (body.0): another file.
    logits = get_method("logits").create(DistillContext(teacher, student, (), teacher_cache="memory",
                                                        teacher_cache_dir=str(tmp_path), teacher_sha256="0" * 64))
    logits.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext, note=notes.append))
    assert notes[-1].startswith("teacher signals read from") and torch.equal(logits.teacher_signal(b).output, a.output)
    context = DistillContext(teacher, student, match_boundaries(teacher, student, explicit="0:0"), teacher_cache="memory",
                             teacher_cache_dir=str(tmp_path), teacher_sha256="0" * 64)
    get_method("fitnet").create(context).prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    assert len(list(tmp_path.glob("teacher-*.safetensors"))) == 2
    # Another teacher: nothing is reused.
    other = DistillContext(teacher, student, (), teacher_cache="memory", teacher_cache_dir=str(tmp_path), teacher_sha256="1" * 64)
    get_method("logits").create(other).prepare(TrainingData(dataset, torch.device("cpu"), nullcontext, note=notes.append))
    assert notes[-1].startswith("caching")
