"""dvc.yaml declares what each stage really uses: its fcnlab modules, its params, its paths.

Checked statically from the stage scripts' imports and `load_section` calls, so a stage can
never silently miss a rerun because a dependency was left out (or rerun for one it never reads).
"""

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


def script_of(stage: dict) -> Path:
    words = stage["cmd"].split()
    assert words[0] == "python" and words[1].startswith("stages/"), stage["cmd"]
    return ROOT / words[1]


def fcnlab_imports(path: Path) -> set[str]:
    """Module names `fcnlab.x` imported by the file at `path` (any import form)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fcnlab.")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "fcnlab" or node.module.startswith("fcnlab."):
                found.add(node.module)                                      # from fcnlab.seg.model import x
                found |= {f"{node.module}.{a.name}" for a in node.names}    # from fcnlab.seg import model
    return {name for name in found if (ROOT / (name.replace(".", "/") + ".py")).exists()}


def package_data_read(path: Path) -> set[str]:
    """Non-Python files beside the module at `path` that it names in a string constant (the
    package data it reads with importlib.resources, e.g. the explorer's page template)."""
    names = {node.value for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and len(node.value) < 100 and "\n" not in node.value}
    return {str((path.parent / name).relative_to(ROOT)) for name in names
            if "/" not in name and not name.endswith(".py") and (path.parent / name).is_file()}


def transitive_modules(script: Path) -> set[str]:
    """Every fcnlab file the script reaches through imports: modules and the package data they
    read (the package __init__.py files hold no logic and are left out)."""
    seen, todo = set(), fcnlab_imports(script)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= fcnlab_imports(ROOT / (module.replace(".", "/") + ".py"))
    files = {module.replace(".", "/") + ".py" for module in seen}
    return files | {data for file in files for data in package_data_read(ROOT / file)}


def sections_read(script: Path) -> set[str]:
    """Names passed as the section argument of `load_section(..., "name")` in the script."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_section":
            names.add(node.args[1].value)
    return names


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_exactly_the_fcnlab_modules_it_imports(name):
    stage = STAGES[name]
    declared = {d for d in stage["deps"] if d.startswith("fcnlab/")}
    assert declared == transitive_modules(script_of(stage))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_depends_on_its_own_script(name):
    stage = STAGES[name]
    assert str(script_of(stage).relative_to(ROOT)) in stage["deps"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_cover_exactly_the_sections_it_reads(name):
    stage = STAGES[name]
    declared_sections = {p.split(".")[0] for p in stage["params"]}
    assert declared_sections == sections_read(script_of(stage))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_output_path_is_passed_on_the_command_line(name):
    stage = STAGES[name]
    outputs = stage.get("outs", []) + stage.get("metrics", [])
    for path in outputs:
        assert path in stage["cmd"].split(), f"{name}: {path} declared but not passed to the script"


def test_every_stage_output_is_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for stage in STAGES.values():
        for path in stage.get("outs", []) + stage.get("metrics", []):
            assert any(path.startswith(rule.strip("/")) for rule in ignored if rule.endswith("/")), path


def test_every_params_section_is_used_by_some_stage():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    used = {p.split(".")[0] for stage in STAGES.values() for p in stage["params"]}
    assert set(params) == used
