"""``--help`` of every command: switches read as switches, and help answers without torch."""

from __future__ import annotations

import re
import subprocess
import sys

import typer
from typer.testing import CliRunner

from srdistill.cli import app

# How typer writes a value type in the help's type column, across versions.
BOOL_METAVAR = re.compile(r"<bool>|\bBOOLEAN\b")


def commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    return {"": group, **{name: group.get_command(ctx, name) for name in group.list_commands(ctx)}}


def help_text(name: str) -> str:
    args = [name, "--help"] if name else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_boolean_switches_show_no_value_in_any_help():
    checked = 0
    for name, command in commands().items():
        text = help_text(name)
        params = command.get_params(typer.Context(command))
        for param in params:
            if not getattr(param, "is_flag", False):
                continue
            flag = max(param.opts, key=len)
            rows = [line for line in text.splitlines() if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", line)]
            assert rows, (name, flag, text)
            for row in rows:
                assert not BOOL_METAVAR.search(row), f"srdistill {name} --help shows a value for {flag}: {row.strip()}"
            checked += 1
    assert checked >= 20  # --help of each command, --json, --overwrite, --dry-run, --channels-last, ...
    # Options that take a value still say which.
    assert re.search(r"--steps\s+<int>|--steps\s+INTEGER", help_text("train"))


def test_every_help_answers_without_importing_torch():
    """`srdistill --help` and `srdistill CMD --help` for every command, in one fresh interpreter:
    torch (seconds to import) stays out of sys.modules after each."""
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from srdistill.cli import COMMANDS, app\n"
        "for args in [['--help']] + [[name, '--help'] for name in COMMANDS]:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "    assert 'Usage' in result.output, (args, result.output)\n"
        "    loaded = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "    print(' '.join(args), *loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    from srdistill.cli import COMMANDS

    assert len(lines) == 1 + len(COMMANDS) and lines[0] == "--help", done.stdout  # the root and each command
    importing = [line for line in lines if "torch" in line.split()]
    assert not importing, f"these imported torch: {importing}"


def test_the_listed_help_is_each_commands_own_first_line():
    from srdistill.cli import COMMANDS, load_command

    for name, (_, _, listed) in COMMANDS.items():
        assert load_command(name).help.strip().splitlines()[0] == listed, name
