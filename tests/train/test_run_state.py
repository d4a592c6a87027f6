"""A run's state has one home: :class:`srdistill.train.session.RunState`, every attribute set in
its ``__init__``; the loop module drives it and assigns only what the loop advances."""

from __future__ import annotations

import ast
import inspect

from srdistill.train import loop, session

# What the step loop itself moves forward (all declared in RunState.__init__ as well).
ADVANCED_BY_THE_LOOP = {"current_lr", "last_checkpoint_time", "last_val", "loop_start", "step", "samples_seen"}


def _assigned(tree: ast.AST, owner: str) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == owner:
                    found.add(part.attr)
    return found


def _state_class() -> ast.ClassDef:
    tree = ast.parse(inspect.getsource(session))
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RunState")


def test_every_run_state_attribute_is_set_in_init():
    cls = _state_class()
    init = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    declared = _assigned(init, "self")
    later = set()
    for method in cls.body:
        if isinstance(method, ast.FunctionDef) and method.name != "__init__":
            later |= _assigned(method, "self")
    assert later <= declared, f"set outside RunState.__init__ (declare them there): {sorted(later - declared)}"


def test_the_loop_holds_no_state_of_its_own():
    tree = ast.parse(inspect.getsource(loop))
    assert not [n.name for n in tree.body if isinstance(n, ast.ClassDef) and issubclass(getattr(loop, n.name), session.RunState)]
    init = next(f for f in _state_class().body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    assert ADVANCED_BY_THE_LOOP <= _assigned(init, "self")
    assigned = _assigned(tree, "run")
    assert assigned <= ADVANCED_BY_THE_LOOP, f"the loop sets {sorted(assigned - ADVANCED_BY_THE_LOOP)}: state belongs in RunState"
