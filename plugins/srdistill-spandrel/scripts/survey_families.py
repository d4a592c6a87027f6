"""Which of spandrel's families load and upscale through srdistill (a survey, not a test).

For every family in spandrel's main registry: build the network with its own class and default
arguments (RGB channels, x2 where the class takes a scale, random weights), save the state dict as
safetensors, load it with ``srdistill.load_model`` (which detects it) and upscale a 32 x 32 image
with ``srdistill.upscale.upscale_tensor``. Each family gets a time box; networks above a size
limit are skipped (their default configuration is a multi-gigabyte model).

    OMP_NUM_THREADS=1 python plugins/srdistill-spandrel/scripts/survey_families.py [--json out.json] [--timeout 90]

Outcomes: ``ok`` (loaded and upscaled; ``arch`` says which srdistill architecture claimed it),
``refused`` (spandrel describes it, but not as an RGB image-to-image model run by its bare forward),
``defaults-fail`` (the class's own default arguments do not construct), ``too-large``,
``timeout``, ``error`` (the message is kept).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

MAX_PARAMS = 150_000_000
# Classes whose own defaults are not a working model (a required argument, or a default window
# that does not divide the default image size): the smallest change that constructs one.
NEEDS_ARGS = {
    "SAFMN": {"dim": 36},
    "SAFMNBCIE": {"dim": 36},
    "SwinIR": {"window_size": 8},
    "Swin2SR": {"window_size": 8},
}


class _TimeBox(Exception):
    pass


def _alarm(signum, frame):
    raise _TimeBox()


def _default_args(family: str, cls, loader) -> dict:
    args = {k: v for k, v in loader.class_defaults(cls).items() if k in loader.RGB_ARGS}
    args.update(NEEDS_ARGS.get(family, {}))
    key = loader.scale_key(cls)
    if key is not None:
        args[key] = 2
    return args


def survey_one(family: str, workdir: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    from srdistill.models import load_model
    from srdistill.upscale import upscale_tensor
    from srdistill_spandrel import loader

    started = time.perf_counter()
    cls = loader.model_class(family)
    args = _default_args(family, cls, loader)
    with loader.quiet_construction():
        try:
            with torch.device("meta"):
                count = sum(p.numel() for p in cls(**args).parameters())
        except Exception:  # noqa: BLE001 - some constructors read tensor values; count on the real one
            count = None
        if count is not None and count > MAX_PARAMS:
            return {"outcome": "too-large", "params": count}
        try:
            net = cls(**args)
        except Exception as exc:  # noqa: BLE001 - the class's own defaults are not a working model
            return {"outcome": "defaults-fail", "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    count = sum(p.numel() for p in net.parameters())
    if count > MAX_PARAMS:
        return {"outcome": "too-large", "params": count}
    path = workdir / f"{family}.safetensors"
    # Shared tensors (tied weights) must be saved as separate copies in safetensors.
    save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(path))
    from srdistill_spandrel.loader import UnusableFamilyError

    try:
        model = load_model(path)
    except UnusableFamilyError as exc:
        return {"outcome": "refused", "params": count, "detail": str(exc)}
    image = torch.rand(3, 32, 32)
    try:
        out = upscale_tensor(model, image, tile=0, device="cpu")
    except Exception as exc:  # noqa: BLE001 - does spandrel's own call API fail on this input too?
        from srdistill_spandrel._import import spandrel

        try:
            with torch.no_grad():
                spandrel().ModelLoader().load_from_state_dict(dict(net.state_dict())).eval()(image[None])
            own = "spandrel's own call runs it"
        except Exception as own_exc:  # noqa: BLE001
            own = f"spandrel's own call fails too ({type(own_exc).__name__})"
        return {"outcome": "error", "arch": model.arch, "detail": f"upscale: {type(exc).__name__}: {str(exc)[:150]}; {own}"}
    return {
        "outcome": "ok",
        "arch": model.arch,
        "claimed_by": model.metadata["loaded_by"]["distribution"],
        "scale": model.scale,
        "params": count,
        "output": list(out.shape),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Write the per-family results here.")
    parser.add_argument("--timeout", type=int, default=90, help="Seconds per family (default 90).")
    parser.add_argument("families", nargs="*", help="Only these families (default: all).")
    opts = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from srdistill_spandrel._import import spandrel

    families = opts.families or [str(s.architecture.id) for s in spandrel().MAIN_REGISTRY.architectures("insertion")]
    signal.signal(signal.SIGALRM, _alarm)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            signal.alarm(opts.timeout)
            try:
                results[family] = survey_one(family, Path(tmp))
            except _TimeBox:
                results[family] = {"outcome": "timeout", "detail": f"over {opts.timeout} s"}
            except Exception as exc:  # noqa: BLE001 - a survey records every failure and goes on
                results[family] = {"outcome": "error", "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
            finally:
                signal.alarm(0)
            row = results[family]
            print(f"{family:14s} {row['outcome']:10s} {row.get('arch', '')} {row.get('detail', '')}", flush=True)
    ok = [f for f, r in results.items() if r["outcome"] == "ok"]
    print(f"\n{len(ok)} of {len(results)} families load and upscale through srdistill", flush=True)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
