"""Reading and writing model files: wrappers, prefixes, refusals, atomic writes."""

from __future__ import annotations

import pytest
import torch

from srdistill import build_model, load_model, save_model
from srdistill.errors import ModelFileError, OutputExistsError, UnsafeFileError
from srdistill.io.model_files import read_model_file


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("edsr-baseline", 2, {"n_feats": 8, "n_resblocks": 1})


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", "model", "net"])
def test_wrappers_and_dataparallel_prefix_are_unwrapped(tmp_path, tiny, wrapper):
    state = {f"module.{k}": v for k, v in tiny.net.state_dict().items()}
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: state, "epoch": 7, "optimizer": {"lr": 1e-4}}, path)
    model = load_model(path)
    assert model.metadata["wrapper"] == wrapper
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(x), tiny.net.eval()(x))


def test_params_ema_is_preferred_over_params(tmp_path, tiny):
    ema = tiny.net.state_dict()
    other = {k: v + 1 if v.is_floating_point() else v for k, v in ema.items()}
    path = tmp_path / "both.pth"
    torch.save({"params": other, "params_ema": ema}, path)
    assert read_model_file(path).wrapper == "params_ema"
    assert torch.equal(read_model_file(path).tensors["head.0.weight"], ema["head.0.weight"])


def test_pickled_module_is_refused(tmp_path, tiny):
    path = tmp_path / "module.pth"
    torch.save(tiny.net, path)
    with pytest.raises(UnsafeFileError, match="could run code"):
        read_model_file(path)


def test_no_state_dict_inside(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "notes": "hello"}, path)
    with pytest.raises(ModelFileError, match="no tensors found"):
        read_model_file(path)


def test_save_is_safetensors_only_and_never_clobbers(tmp_path, tiny):
    with pytest.raises(ModelFileError, match="safetensors only"):
        save_model(tiny, tmp_path / "model.pth")
    target = save_model(tiny, tmp_path / "model.safetensors")
    before = target.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        save_model(tiny, target)
    assert target.read_bytes() == before
    save_model(tiny, target, overwrite=True, provenance={"note": "again"})
    assert load_model(target).metadata["provenance"] == {"note": "again"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_failed_write_leaves_nothing_behind(tmp_path, tiny, monkeypatch):
    import srdistill.io.model_files as mf

    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mf, "save_file", boom)
    with pytest.raises(OSError):
        save_model(tiny, tmp_path / "full.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_saved_keys_equal_a_fresh_model_and_metadata_is_complete(tmp_path, tiny):
    path = save_model(tiny, tmp_path / "m.safetensors")
    raw = read_model_file(path)
    fresh = build_model("edsr-baseline", 2, {"n_feats": 8, "n_resblocks": 1}).net.state_dict()
    assert set(raw.tensors) == set(fresh)
    assert all(raw.tensors[k].shape == fresh[k].shape for k in fresh)
    assert raw.metadata["srdistill.value_range"] == "0-1"
    assert raw.metadata["srdistill.version"]


def test_basicsr_edsr_layout_loads_through_detection(tmp_path):
    model = build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 2, "layout": "basicsr"})
    path = tmp_path / "basicsr_edsr.pth"
    torch.save({"params": model.net.state_dict()}, path)
    loaded = load_model(path)
    assert loaded.arch == "edsr" and loaded.hparams["layout"] == "basicsr" and loaded.scale == 4
    assert "conv_first.weight" in loaded.net.state_dict()
