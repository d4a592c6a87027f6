"""Teacher-labelled sample kinds (data/teacher_labelled.py): inputs cut where the plan says,
choices reproducible from (seed, index), and bad folders and settings refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srdistill.data.dataset import ImageSet, PatchDataset, TrainImage, apply_transform, bicubic_uint8
from srdistill.data.folders import ImagePair
from srdistill.data.teacher_labelled import (
    PAIRED,
    UNLABELED,
    ZOOM_IN,
    ZOOM_OUT,
    TeacherLabelled,
    TeacherLabelledDataset,
    UnlabeledSet,
    build_sample_stream,
    load_unlabeled,
)
from srdistill.errors import DataError, UsageError

SCALE, PATCH = 4, 8


def image_set(sizes=((40, 52), (36, 47), (64, 34))) -> ImageSet:
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate(sizes):
        hr = rng.integers(0, 256, (h * SCALE, w * SCALE, 3), dtype=np.uint8)
        images.append(TrainImage(f"im{i}", (h * SCALE, w * SCALE), hr, bicubic_uint8(hr, SCALE)))
    return ImageSet([ImagePair(Path(f"im{i}.png"), None) for i in range(len(sizes))], images, SCALE, 1.0, True)


def unlabeled_set(count=3) -> UnlabeledSet:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(count)]
    return UnlabeledSet(Path("unl"), [f"u{i}.png" for i in range(count)], [im.shape[:2] for im in images], images)


def stream(seed=3, sizes=((40, 52), (36, 47), (64, 34)), **kinds) -> TeacherLabelledDataset:
    paired = PatchDataset(image_set(sizes), patch_size=PATCH, seed=seed)
    spec = TeacherLabelled(unlabeled="unl", **kinds) if "unlabeled_ratio" in kinds else TeacherLabelled(**kinds)
    unl = unlabeled_set() if spec.unlabeled is not None else None
    return TeacherLabelledDataset(paired, unl, spec, scale=SCALE, patch_size=PATCH, seed=seed)


def test_kinds_crops_and_draws_are_functions_of_seed_and_index():
    a, b = stream(unlabeled_ratio=0.4, zoom_in=0.3, zoom_out=0.3, consistency=0.5), stream(
        unlabeled_ratio=0.4, zoom_in=0.3, zoom_out=0.3, consistency=0.5)
    plans = [a.plan(i) for i in range(400)]
    assert plans == [b.plan(i) for i in range(400)]  # another object, same seed: same stream
    assert all(np.array_equal(a[i]["lr"], b[i]["lr"]) for i in (0, 7, 399))
    other = stream(seed=4, unlabeled_ratio=0.4, zoom_in=0.3, zoom_out=0.3, consistency=0.5)
    assert plans != [other.plan(i) for i in range(400)]
    share = {k: sum(p.kind == k for p in plans) / 400 for k in (PAIRED, UNLABELED, ZOOM_IN, ZOOM_OUT)}
    # Expected 0.6*0.4, 0.4, 0.6*0.3, 0.6*0.3.
    assert abs(share[PAIRED] - 0.24) < 0.07 and abs(share[UNLABELED] - 0.4) < 0.07
    assert abs(share[ZOOM_IN] - 0.18) < 0.06 and abs(share[ZOOM_OUT] - 0.18) < 0.06
    # Consistency only on teacher-labelled samples, about half of them.
    assert all(p.consistency == 0 for p in plans if p.kind == PAIRED)
    labelled = [p for p in plans if p.kind != PAIRED]
    assert 0.35 < sum(p.consistency > 0 for p in labelled) / len(labelled) < 0.65


def test_a_paired_sample_is_the_plain_streams_sample():
    plain = PatchDataset(image_set(), patch_size=PATCH, seed=3)
    mixed = stream(zoom_in=0.5)
    paired = [i for i in range(60) if mixed.kind(i) == PAIRED]
    assert len(paired) > 10
    for i in paired:
        got, want = mixed[i], plain[i]
        assert np.array_equal(got["lr"], want["lr"]) and np.array_equal(got["hr"], want["hr"])
        assert got["teacher_only"] is False and got["consistency"] == 0


def test_a_zoom_in_input_is_the_hr_crop():
    data = stream(zoom_in=1.0)
    for i in range(20):
        plan, item = data.plan(i), data[i]
        assert plan.kind == ZOOM_IN and item["teacher_only"] and item["image"] == -1
        hr = data.paired.images.images[plan.image].hr
        crop = hr[plan.top : plan.top + PATCH, plan.left : plan.left + PATCH]
        assert np.array_equal(item["lr"], apply_transform(crop, plan.transform))
        assert not item["hr"].any()  # no ground truth: zeros, masked out of the GT term


def test_a_zoom_out_input_is_the_bicubic_shrink_of_the_lr_region():
    data = stream(zoom_out=1.0, sizes=((120, 128), (64, 34)))
    margin = 3  # output pixels: the x4 antialiased cubic reaches 2 of them
    checked = 0
    for i in range(200):
        plan = data.plan(i)
        assert plan.kind == ZOOM_OUT
        lr = data.paired.images.images[plan.image].lr
        whole = bicubic_uint8(lr, SCALE)
        item = data[i]
        crop = whole[plan.top : plan.top + PATCH, plan.left : plan.left + PATCH]
        assert np.array_equal(item["lr"], apply_transform(crop, plan.transform))
        t, l = plan.top - margin, plan.left - margin
        if t < 0 or l < 0 or plan.top + PATCH + margin > whole.shape[0] or plan.left + PATCH + margin > whole.shape[1]:
            continue
        region = lr[t * SCALE : (plan.top + PATCH + margin) * SCALE, l * SCALE : (plan.left + PATCH + margin) * SCALE]
        shrunk = bicubic_uint8(region, SCALE)[margin:-margin, margin:-margin]
        assert np.abs(shrunk.astype(int) - crop.astype(int)).max() <= 1
        checked += 1
    assert checked > 5


def test_unlabeled_only_stream_has_no_ground_truth():
    spec = TeacherLabelled(unlabeled="unl", consistency=1.0)
    data = TeacherLabelledDataset(None, unlabeled_set(), spec, scale=SCALE, patch_size=PATCH, seed=0)
    assert data.ratio == 1.0
    item = data[5]
    assert "hr" not in item and item["teacher_only"] and item["consistency"] > 0
    plan = data.plan(5)
    source = data.unlabeled.arrays(plan.image)
    assert np.array_equal(item["lr"], apply_transform(source[plan.top : plan.top + PATCH, plan.left : plan.left + PATCH], plan.transform))
    assert data.cache_plan(5).image == plan.image  # unlabeled images are cached after the (no) paired ones


# -- bad folders and settings ----------------------------------------------------------------------
def save(folder: Path, name: str, h: int, w: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)


def test_an_unlabeled_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"unlabeled folder .* holds no images"):
        load_unlabeled(tmp_path, scale=SCALE, patch_size=PATCH)
    with pytest.raises(DataError, match=r"does not exist"):
        load_unlabeled(tmp_path / "missing", scale=SCALE, patch_size=PATCH)


def test_unlabeled_images_smaller_than_the_patch(tmp_path):
    save(tmp_path, "a.png", 6, 20)
    with pytest.raises(DataError, match=r"every image in the unlabeled folder .* is smaller than one 8x8 patch .*patch_size"):
        load_unlabeled(tmp_path, scale=SCALE, patch_size=PATCH)
    save(tmp_path, "b.png", 12, 20)
    with pytest.warns(UserWarning, match="a.png: 20x6 is smaller"):
        kept = load_unlabeled(tmp_path, scale=SCALE, patch_size=PATCH)
    assert kept.names == ["b.png"] and len(kept.skipped) == 1


def test_an_unlabeled_folder_mixing_hr_and_lr_sizes(tmp_path):
    save(tmp_path, "small.png", 20, 30)
    save(tmp_path, "other.png", 23, 41)  # unrelated sizes are fine
    assert len(load_unlabeled(tmp_path, scale=SCALE, patch_size=PATCH)) == 2
    save(tmp_path, "big.png", 83, 121)  # 83 // 4 = 20, 121 // 4 = 30: an HR image of small.png's size
    with pytest.raises(DataError, match=r"mixes resolutions: big.png is 121x83, x4 of small.png \(30x20\)"):
        load_unlabeled(tmp_path, scale=SCALE, patch_size=PATCH)


@pytest.mark.parametrize("spec, paired, message", [
    (TeacherLabelled(zoom_in=1.2), True, r"zoom_in is a probability per sample, in \[0, 1\]; got 1.2"),
    (TeacherLabelled(zoom_out=-0.1), True, r"zoom_out is a probability"),
    (TeacherLabelled(zoom_in=0.6, zoom_out=0.5), True, r"zoom_in 0.6 \+ zoom_out 0.5 is more than 1"),
    (TeacherLabelled(unlabeled_ratio=0.3), True, r"unlabeled_ratio is the share of samples from unlabeled DIR, which is not given"),
    (TeacherLabelled(zoom_in=0.5), False, r"zoom_in/zoom_out crop the paired images .* no data is given"),
    (TeacherLabelled(consistency=0.5), True, r"consistency applies to teacher-labelled samples and this run has none"),
])
def test_settings_that_cannot_work_are_refused(spec, paired, message):
    with pytest.raises(UsageError, match=message):
        spec.check(has_paired=paired)


def test_zoom_out_needs_an_lr_image_that_still_holds_a_patch():
    paired = PatchDataset(image_set(((20, 24),)), patch_size=PATCH, seed=0)
    with pytest.raises(DataError, match=r"zoom_out shrinks each LR image x4 again.* \(LR at least 32x32; the largest here is 24x20\)"):
        build_sample_stream(paired, TeacherLabelled(zoom_out=0.5), scale=SCALE, patch_size=PATCH, seed=0)


# -- memory: decoded unlabeled pixels are kept only within the cache budget ------------------------
def frames(folder: Path, count: int = 6) -> Path:
    rng = np.random.default_rng(7)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (18 + i, 25 + 2 * i, 3), dtype=np.uint8)).save(folder / f"f{i}.png")
    return folder


def test_samples_are_the_same_whether_unlabeled_images_are_cached_or_decoded_per_sample(tmp_path):
    folder = frames(tmp_path / "frames")
    spec = TeacherLabelled(unlabeled=folder, unlabeled_ratio=0.6, zoom_in=0.2, zoom_out=0.2, consistency=0.5)

    def build(cache):
        paired = PatchDataset(image_set(), patch_size=PATCH, seed=5)
        return build_sample_stream(paired, spec, scale=SCALE, patch_size=PATCH, seed=5, cache=cache)

    kept, decoded = build("memory"), build("none")
    assert kept.cached and kept.unlabeled.nbytes == sum((18 + i) * (25 + 2 * i) * 3 for i in range(6))
    assert not decoded.cached and decoded.unlabeled.pixels is None and decoded.unlabeled.nbytes == 0
    assert decoded.unlabeled.sizes == kept.unlabeled.sizes and decoded.unlabeled.megapixels == kept.unlabeled.megapixels
    indices = range(0, 500, 10)
    assert sum(kept.plan(i).kind == UNLABELED for i in indices) >= 20
    for i in indices:
        a, b = kept[i], decoded[i]
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a), i
        plan = decoded.plan(i)
        if plan.kind == UNLABELED:  # and what both hold is the file's pixels
            whole = np.asarray(Image.open(folder / decoded.unlabeled.names[plan.image]).convert("RGB"))
            assert np.array_equal(decoded.input_of(plan), apply_transform(whole[plan.top : plan.top + PATCH, plan.left : plan.left + PATCH], plan.transform))
    # The teacher cache is built on the same images, read through the accessor when not kept.
    for (name, size, image), (name2, size2, image2) in zip(kept.cache_sources(), decoded.cache_sources(), strict=True):
        assert name == name2 and size == size2 and np.array_equal(image(), image2())


def test_unlabeled_pixels_are_kept_only_when_all_of_them_fit(tmp_path):
    folder = frames(tmp_path / "frames")
    everything = load_unlabeled(folder, scale=SCALE, patch_size=PATCH)
    assert everything.cached and load_unlabeled(folder, scale=SCALE, patch_size=PATCH, budget=everything.nbytes).cached
    over = load_unlabeled(folder, scale=SCALE, patch_size=PATCH, budget=everything.nbytes - 1)
    assert over.pixels is None and over.names == everything.names and over.sizes == everything.sizes
    assert all(np.array_equal(over.arrays(i), everything.arrays(i)) for i in range(len(over)))


def test_the_paired_images_cache_counts_against_the_unlabeled_budget(tmp_path, monkeypatch):
    import srdistill.data.dataset as dataset
    from srdistill.data.dataset import CACHE_MEMORY_SHARE

    folder = frames(tmp_path / "frames")
    unlabeled_bytes = load_unlabeled(folder, scale=SCALE, patch_size=PATCH).nbytes
    paired = PatchDataset(image_set(), patch_size=PATCH, seed=0)
    paired_bytes = sum(im.hr.nbytes + im.lr.nbytes for im in paired.images.images)
    spec = TeacherLabelled(unlabeled=folder)

    def unlabeled_cached(available, with_paired):
        monkeypatch.setattr(dataset, "available_host_memory", lambda: available)
        data = build_sample_stream(paired if with_paired else None, spec, scale=SCALE, patch_size=PATCH, seed=0, cache="auto")
        return data.unlabeled.cached

    both = (paired_bytes + unlabeled_bytes) / CACHE_MEMORY_SHARE
    assert unlabeled_cached(both, with_paired=True)
    assert not unlabeled_cached(both - 2 / CACHE_MEMORY_SHARE, with_paired=True)
    assert unlabeled_cached(both - 2 / CACHE_MEMORY_SHARE, with_paired=False)  # alone, the folder fits


def test_an_unlabeled_image_that_changes_during_a_run_is_named(tmp_path):
    folder = frames(tmp_path / "frames")
    images = load_unlabeled(folder, scale=SCALE, patch_size=PATCH, budget=0)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "f2.png")
    with pytest.raises(DataError, match=r"f2.png is now 40x40, it was 29x20 at start-up; leave the unlabeled folder alone"):
        images.arrays(2)
    (folder / "f1.png").unlink()
    with pytest.raises(DataError, match=r"f1.png could be read at start-up but not now"):
        images.arrays(1)
    with pytest.raises(UsageError, match=r"cache must be one of auto, memory, none; got 'disk'"):
        build_sample_stream(None, TeacherLabelled(unlabeled=folder), scale=SCALE, patch_size=PATCH, seed=0, cache="disk")
