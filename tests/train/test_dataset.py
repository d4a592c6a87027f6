"""Training data: folder layouts, bad files, counter-based patches (workers and ranks agree)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_images
from PIL import Image

from srdistill.data.dataset import (
    DataWarning,
    PatchDataset,
    apply_transform,
    bicubic_uint8,
    decode_pair,
    hold_out,
    load_images,
    patch_loader,
)
from srdistill.data.folders import find_images
from srdistill.data.resize import imresize
from srdistill.errors import DataError


def _set(folder, **kw):
    contents = find_images(folder, kw.pop("scale", 2))
    return load_images(contents.pairs, scale=2, patch_size=kw.pop("patch_size", 8), **kw)


def test_hr_folder_generates_matlab_bicubic_lr(images):
    imgs = _set(images)
    assert imgs.cached and len(imgs.images) == 4
    hr, lr = imgs.arrays(0)
    assert hr.shape == (40, 48, 3) and lr.shape == (20, 24, 3) and lr.dtype == np.uint8
    # The same function eval uses: MATLAB imresize on uint8, rounded per pass.
    chw = torch.from_numpy(hr).permute(2, 0, 1).float()
    expected = imresize(chw, scale=0.5, matlab_uint8=True).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(lr, expected)


def test_odd_sizes_are_cropped_to_the_scale(tmp_path):
    folder = write_images(tmp_path / "odd", count=1, size=(41, 47))
    hr, lr = _set(folder).arrays(0)
    assert hr.shape == (40, 46, 3) and lr.shape == (20, 23, 3)


def test_hr_downscale_shrinks_before_cutting(images):
    hr, lr = _set(images, hr_downscale=2.0, patch_size=4).arrays(0)
    assert hr.shape == (20, 24, 3) and lr.shape == (10, 12, 3)


def test_paired_folders_use_the_given_lr(tmp_path):
    root = tmp_path / "set"
    write_images(root / "HR", count=2)
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    for path in sorted((root / "HR").iterdir()):
        arr = np.asarray(Image.open(path))
        lr = np.full_like(bicubic_uint8(arr, 2), 7)  # not what bicubic would give: proves it is read
        Image.fromarray(lr).save(root / "LR_bicubic" / "X2" / f"{path.stem}x2.png")
    contents = find_images(root, 2)
    assert contents.paired
    hr, lr = load_images(contents.pairs, scale=2, patch_size=8).arrays(1)
    assert (lr == 7).all() and hr.shape[0] == 2 * lr.shape[0]


def test_scale_mismatch_between_paired_folders(tmp_path):
    root = tmp_path / "set"
    write_images(root / "HR", count=1)
    (root / "LR_bicubic" / "X3").mkdir(parents=True)
    with pytest.raises(DataError, match="scale mismatch: .*LR_bicubic holds X3 but scale is 2"):
        find_images(root, 2)
    # An X2 folder whose files are really x3 is caught when the pair is decoded.
    (root / "LR_bicubic" / "X2").mkdir()
    Image.new("RGB", (16, 13)).save(root / "LR_bicubic" / "X2" / "img00x2.png")
    with pytest.raises(DataError, match="scale mismatch between paired folders: img00x2.png is 16x13"):
        load_images(find_images(root, 2).pairs, scale=2, patch_size=4)


def test_bad_files_are_skipped_with_one_warning_each(images):
    (images / "broken.png").write_bytes(b"not a png at all")
    (images / "notes.txt").write_text("ignored: not an image by extension")
    with pytest.warns(DataWarning) as caught:
        imgs = _set(images)
    assert len(imgs.images) == 4
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "broken.png" in messages[0]


def test_all_bad_folder_stops_with_one_message(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"none of the 2 image\(s\) .* could be used \(first problem: a.png"):
        _set(folder)


def test_images_smaller_than_a_patch(tmp_path):
    folder = write_images(tmp_path / "small", count=2, size=(12, 12))
    with pytest.raises(DataError, match="smaller than one 8x8 LR patch .*16x16 HR at x2.*smaller patch_size"):
        _set(folder)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_images(tmp_path / "nope", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        find_images(tmp_path / "empty", 2)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no images \(1 other file\(s\), e.g. readme.txt, are not images\)"):
        find_images(tmp_path / "docs", 2)


def test_patches_are_aligned_and_augmented_together(images):
    imgs = _set(images)
    ds = PatchDataset(imgs, patch_size=8, seed=3)
    codes = set()
    for index in range(40):
        plan = ds.plan(index)
        codes.add(plan.transform)
        item = ds[index]
        hr, lr = imgs.arrays(plan.image)
        lr_crop = lr[plan.top : plan.top + 8, plan.left : plan.left + 8]
        hr_crop = hr[plan.top * 2 : plan.top * 2 + 16, plan.left * 2 : plan.left * 2 + 16]
        assert np.array_equal(item["lr"], apply_transform(lr_crop, plan.transform))
        assert np.array_equal(item["hr"], apply_transform(hr_crop, plan.transform))
        # The same flip/rotation on both: the transformed HR patch still downscales to the LR one.
        assert np.abs(bicubic_uint8(item["hr"], 2).astype(int) - item["lr"]).mean() < 3
    assert codes == set(range(8))


def test_each_epoch_visits_every_image_once(images):
    ds = PatchDataset(_set(images), patch_size=8, seed=0)
    for epoch in range(3):
        assert sorted(ds.plan(epoch * 4 + i).image for i in range(4)) == [0, 1, 2, 3]


def _batches(loader, n):
    stream = iter(loader)
    return [next(stream) for _ in range(n)]


def test_batches_come_as_channels_last_uint8(images):
    batch = next(iter(patch_loader(PatchDataset(_set(images), patch_size=8, seed=0), start=0, batch_size=3)))
    assert batch["lr"].shape == (3, 3, 8, 8) and batch["hr"].shape == (3, 3, 16, 16) and batch["hr"].dtype == torch.uint8
    assert batch["hr"].is_contiguous(memory_format=torch.channels_last)
    assert batch["index"].tolist() == [0, 1, 2]


def test_stream_is_the_same_with_workers_and_from_any_position(images):
    ds = PatchDataset(_set(images), patch_size=8, seed=1)
    inline = _batches(patch_loader(ds, start=0, batch_size=4), 4)
    workers = _batches(patch_loader(ds, start=0, batch_size=4, workers=2), 4)
    resumed = _batches(patch_loader(ds, start=8, batch_size=4), 2)  # after 2 batches of 4
    for a, b in zip(inline, workers):
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
    for a, b in zip(inline[2:], resumed):
        assert torch.equal(a["hr"], b["hr"])
    other_seed = _batches(patch_loader(PatchDataset(ds.images, patch_size=8, seed=2), start=0, batch_size=4), 1)
    assert not torch.equal(other_seed[0]["hr"], inline[0]["hr"])


def test_two_ranks_of_batch_b_see_one_process_of_batch_2b(images):
    ds = PatchDataset(_set(images), patch_size=8, seed=0)
    single = _batches(patch_loader(ds, start=0, batch_size=4), 3)
    rank0 = _batches(patch_loader(ds, start=0, batch_size=2, rank=0, world_size=2), 3)
    rank1 = _batches(patch_loader(ds, start=0, batch_size=2, rank=1, world_size=2), 3)
    for s, a, b in zip(single, rank0, rank1):
        assert torch.equal(s["hr"], torch.cat([a["hr"], b["hr"]]))


def test_hold_out_is_seeded_and_disjoint(images):
    contents = find_images(images, 2)
    train, val = hold_out(contents, 0.25, seed=0)
    assert len(val) == 1 and len(train) == 3 and not set(train) & set(val)
    assert hold_out(contents, 0.25, seed=0) == (train, val)
    with pytest.raises(DataError, match="leaves nothing to train on"):
        hold_out(contents, 0.99, seed=0)


def test_too_large_for_the_cache_falls_back_to_decoding(images):
    imgs = _set(images, cache="none")
    assert not imgs.cached and imgs.images[0].hr is None
    cached = _set(images)
    for i in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(imgs.arrays(i), cached.arrays(i)))


def test_decode_keeps_gray_flag(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)).save(path)
    from srdistill.data.folders import ImagePair

    hr, lr, gray = decode_pair(ImagePair(path, None), 2)
    assert gray and hr.shape == (32, 32, 3) and (hr[..., 0] == hr[..., 1]).all()
