"""Library messages name parameters, never a command's flags (errors.py explains the design).

A Python caller sees ``tile must be >= 0``; the CLI spells the same message with the flag the
user typed (``--tile must be >= 0``), per command, including flags named unlike the parameter.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

import srdistill
from srdistill.errors import ModelFileError, UsageError, param, render_params, spell, spelling

LIBRARY = Path(srdistill.__file__).parent
# A command-line flag: "--tile", "-s" (not a hyphen inside a word, not a negative number).
FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
# Calls whose text reaches a user: exceptions and warnings made, notes and spelled messages.
MESSAGE_CALLS = re.compile(r"(Error|Warning|Exception|Interrupted|Diverged)$|^(warn|note|info|spell|_need)$")


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _strings(node: ast.AST):
    """(line, text) of each literal; an f-string as one text, each value a word ("{n}-pixel" is no flag)."""
    inside_fstrings = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.JoinedStr):
            inside_fstrings.update(id(v) for v in sub.values)
            yield sub.lineno, "".join(v.value if isinstance(v, ast.Constant) else "X" for v in sub.values)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in inside_fstrings:
            yield sub.lineno, sub.value


def message_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in a raised exception or a message call, f-string parts included."""
    tree = ast.parse(source)
    roots = [n.exc for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc is not None]
    roots += [n for n in ast.walk(tree) if isinstance(n, ast.Call) and MESSAGE_CALLS.search(_callee(n))]
    return sorted({found for root in roots for found in _strings(root)})


def test_the_scan_finds_flags_in_messages_and_nothing_else():
    source = '''
import warnings
def f(tile, log):
    """Docs may show `srdistill upscale --tile 0`."""
    if tile < 0:
        raise UsageError(f"--tile must be >= 0, got {tile}")
    warnings.warn("pass -s to resize", stacklevel=2)
    log.note(f"{name}: retry with " "--tile-pad 8")
    usage = "--tile N"  # not a message
    raise ValueError(f"bad non-finite step {-1}")
'''
    flagged = [(line, FLAG.findall(text)) for line, text in message_literals(source) if FLAG.search(text)]
    assert flagged == [(6, ["--tile"]), (7, ["-s"]), (8, ["--tile-pad"])]  # a value "{-1}" is no flag


def test_no_library_message_spells_a_command_line_flag():
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if "cli" in path.relative_to(LIBRARY).parts:
            continue
        for line, text in message_literals(path.read_text(encoding="utf-8")):
            if FLAG.search(text):
                found.append(f"{path.relative_to(LIBRARY)}:{line}: {text!r}")
    assert not found, "write param('name') instead of a flag:\n" + "\n".join(found)


def test_a_setting_reads_as_python_or_as_the_commands_flag():
    template = f"use {param('device', 'cpu')} or pass {param('overwrite', True)}; {param('allow_resize', False)} refuses"
    assert render_params(template) == "use device='cpu' or pass overwrite=True; allow_resize=False refuses"
    flags = {"device": "--device", "overwrite": "--overwrite", "allow_resize=False": "--no-resize"}
    assert render_params(template, flags) == "use --device cpu or pass --overwrite; --no-resize refuses"
    # No flag for a setting: the Python spelling, never a made-up flag.
    assert render_params(template, {"device": "--device"}) == "use --device cpu or pass overwrite=True; allow_resize=False refuses"
    with spelling(flags):
        assert spell(template) == str(UsageError(template)) == "use --device cpu or pass --overwrite; --no-resize refuses"
    assert spell(template) == "use device='cpu' or pass overwrite=True; allow_resize=False refuses"


def test_api_errors_and_warnings_name_parameters(tmp_path):
    from srdistill.models import build_model
    from srdistill.upscale import Upscaler, resolve_model

    model = build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1}, seed=0)
    with pytest.raises(UsageError) as caught:
        Upscaler(model, tile=-1, device="cpu")
    assert str(caught.value) == "tile must be >= 0 (0: the whole image at once), got -1"
    with pytest.raises(UsageError) as caught:
        Upscaler(model, scale=3, allow_resize=False, device="cpu")
    assert str(caught.value).endswith("pass a x3 model, scale=2, or allow the bicubic resize after the model (allow_resize=True)")
    with pytest.raises(ModelFileError) as caught:
        resolve_model(str(tmp_path / "nosuch"), 2)
    assert str(caught.value).startswith(f"spec {tmp_path / 'nosuch'}: no such file")
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        resolve_model("edsr-lite", 2)
    (warning,) = [w for w in caught_warnings if "preset" in str(w.message)]
    assert str(warning.message).startswith("spec edsr-lite is a preset: random weights")


def test_cli_spells_flags_for_upscale_train_eval_and_compare(tmp_path):
    from PIL import Image

    from srdistill.models import build_model, save_model

    photo = tmp_path / "photo.png"
    Image.new("RGB", (12, 12), "gray").save(photo)
    model = tmp_path / "edsr.safetensors"
    save_model(build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1}, seed=0), model)
    assert_one_line_error(run_cli("upscale", photo, "--model", model, "--tile", "-1", "--device", "cpu"),
                          "error: --tile must be >= 0 (0: the whole image at once), got -1", code=2)
    # --no-resize is the opposite of the library's allow_resize: the message still reads right.
    r = run_cli("upscale", photo, "--model", model, "-s", "3", "--no-resize", "--device", "cpu")
    assert_one_line_error(r, "--scale 3 asked; pass a x3 model, --scale 2, or allow the bicubic resize after the model "
                             "(without --no-resize)", code=2)
    # Notes are spelled the same way: the library's spec is --model.
    r = run_cli("upscale", photo, "--model", "edsr-lite", "--tile", "-1", "--device", "cpu")
    assert "note: --model edsr-lite is a preset: random weights" in r.stderr and r.returncode == 2
    # train: the library's init is --init; a file that is not there names the flag.
    r = run_cli("train", "--arch", "edsr-lite", "--init", tmp_path / "missing.safetensors", "--data", tmp_path,
                "--steps", "1", "--device", "cpu", "--run-dir", tmp_path / "run")
    line = assert_one_line_error(r, "--init ", "missing.safetensors", code=1)
    assert "\x1f" not in line
    # eval: evaluate()'s data_dir is --data, resolve_model()'s spec is --model.
    assert_one_line_error(run_cli("eval", "--model", tmp_path / "nosuch.txt", "--data", tmp_path),
                          "--model", "nosuch.txt: no such file", code=1)
    assert_one_line_error(run_cli("eval", "--bicubic", "--scale", "2", "--data", photo),
                          f"--data {photo} is not a folder", code=1)
    # compare: the library's hr and from_hr.
    assert_one_line_error(run_cli("compare", photo, "--hr", photo, "--from-hr", "-s", "2", "-o", tmp_path / "c.png"),
                          "give either --hr FILE or --from-hr, not both", code=2)


@pytest.mark.parametrize("name", ["upscale", "eval", "compare", "inspect", "convert", "train", "distill", "archs"])
def test_every_flag_a_command_spells_a_parameter_with_is_one_it_has(name):
    import importlib

    from srdistill.cli import COMMANDS, load_command
    from srdistill.cli._console import param_flags

    module, function, _ = COMMANDS[name]
    flags = param_flags(getattr(importlib.import_module(f"srdistill.cli.{module}"), function))
    options = {opt for p in load_command(name).params for opt in (*p.opts, *p.secondary_opts)}
    spelled = {flag for text in flags.values() for flag in re.findall(r"--[\w-]+", text)}
    assert spelled and spelled <= options, sorted(spelled - options)
