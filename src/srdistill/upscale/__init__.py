"""Upscale images with a super-resolution model: tensors, files and folders.

    from srdistill.upscale import upscale_paths, upscale_tensor

    model = srdistill.load_model("edsr_x4.safetensors")
    sr = upscale_tensor(model, lr)                          # C x H x W in [0, 1] -> C x 4H x 4W
    upscale_paths(model, ["photos/"], output="out/", scale=4, keep_going=True)

The layers, each usable on its own:

* :mod:`.upscaler` -- :class:`Upscaler`: a model prepared once (device, dtype, tile size) and run
  tile by tile over C x H x W tensors; a scale the model lacks is reached with MATLAB bicubic.
* :mod:`.channels` -- gray, gray+alpha and RGBA through an RGB network (alpha without fringes).
* :mod:`.files` -- :func:`upscale_file`: one file in, one file out, 8/16-bit and metadata kept.
* :mod:`.jobs` -- :func:`upscale_paths`: inputs found, outputs named and checked, then the loop.
* :mod:`.model_choice` -- :func:`resolve_model`: what ``--model`` names (file, preset, default).

Progress is reported through :class:`UpscaleProgress`; nothing here prints.
"""


# Names load on first use (PEP 562): ``progress`` is plain Python that `srdistill upscale --help`
# reads, while the other modules import torch (seconds). The imports are spelled out, not looked
# up by string, so the import-direction test still sees them.
def __getattr__(name: str):
    if name == "bleed_transparent":
        from . import channels as module
    elif name in ("DEFAULT_MAX_OUTPUT_PIXELS", "quantize", "upscale_file"):
        from . import files as module
    elif name in ("Job", "check_output_location", "collect_inputs", "plan_jobs", "upscale_paths"):
        from . import jobs as module
    elif name in ("default_model_file", "resolve_model"):
        from . import model_choice as module
    elif name in ("ImageResult", "UpscaleProgress", "results_json"):
        from . import progress as module
    elif name in ("Upscaler", "upscale_tensor"):
        from . import upscaler as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


__all__ = [
    "DEFAULT_MAX_OUTPUT_PIXELS",
    "ImageResult",
    "Job",
    "UpscaleProgress",
    "Upscaler",
    "bleed_transparent",
    "check_output_location",
    "collect_inputs",
    "default_model_file",
    "plan_jobs",
    "quantize",
    "resolve_model",
    "results_json",
    "upscale_file",
    "upscale_paths",
    "upscale_tensor",
]
