"""The files copied into exports stand alone: no mifg imports, only stdlib, Pillow and (lazily) verl."""

from __future__ import annotations

import ast
import sys

import pytest

from pipeline.export.assets import asset_text

ALLOWED = {"PIL", "verl"}


@pytest.mark.parametrize("name", ["mifg_reward.py", "mifg_tools.py", "lmms_eval_utils.py"])
def test_asset_imports_are_standalone(name):
    tree = ast.parse(asset_text(name))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    foreign = {r for r in roots if r not in sys.stdlib_module_names and r not in ALLOWED}
    assert not foreign, f"{name} imports {foreign}"


def test_tools_import_verl_only_inside_a_try():
    tree = ast.parse(asset_text("mifg_tools.py"))
    verl_imports = [
        node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("verl")
    ]
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for n in ast.walk(t)}
    assert verl_imports and all(id(n) in guarded for n in verl_imports)
