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

from .channels import bleed_transparent
from .files import DEFAULT_MAX_OUTPUT_PIXELS, quantize, upscale_file
from .jobs import Job, check_output_location, collect_inputs, plan_jobs, upscale_paths
from .model_choice import default_model_file, resolve_model
from .progress import ImageResult, UpscaleProgress, results_json
from .upscaler import Upscaler, upscale_tensor

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
