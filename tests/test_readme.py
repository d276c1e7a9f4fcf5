"""README.md is user documentation that stays true: its commands are the ones CI runs, its links
and anchors resolve, it names every CLI command and only params that exist, and it holds no dated
or machine-specific sentence and no timing beyond the default run's one line (measurements live
in docs/benchmarks.md).
"""

import re

import pytest
import yaml

from conftest import ROOT
from fcnlab.cli import build_parser

README = ROOT / "README.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
FILE_EXTENSIONS = {"npz", "npy", "json", "yaml", "csv", "png", "keras", "html"}
VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def shell_lines(markdown: str) -> list[str]:
    """Every line inside the ```bash blocks of a markdown text."""
    blocks = re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a markdown text's headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def ci_test_command() -> str:
    """The last line of .ci/run: the command CI runs, with pip's -q (quiet) left out."""
    last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    return last.replace(" -q ", " ")


def test_readme_test_command_is_the_one_ci_runs():
    assert ci_test_command() == VENV + 'pip install -c constraints.txt -e ".[test]" && pytest'
    assert ci_test_command() in shell_lines(README.read_text())


def test_readme_quickstart_installs_the_same_way_then_runs_dvc_repro():
    assert VENV + "pip install -c constraints.txt -e . && dvc repro" in shell_lines(README.read_text())


@pytest.mark.parametrize("page", [README, BENCHMARKS], ids=["README", "benchmarks"])
def test_every_relative_link_and_anchor_resolves(page):
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert relative, f"{page.name} links nothing"
    for target in relative:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name} links {target}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(file.read_text()), f"{page.name}: no heading for {target}"


def test_readme_shows_every_figure_in_docs():
    text = README.read_text()
    for png in sorted((ROOT / "docs").glob("*.png")):
        assert f"](docs/{png.name})" in text, f"README does not show docs/{png.name}"


def test_readme_names_every_cli_command():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"segment", "encode", "decode", "export", "report"} <= set(commands)
    text = README.read_text()
    for name in commands:
        assert f"fcnlab {name} " in text, f"README never shows `fcnlab {name}`"


def flat_keys(section: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in section.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= flat_keys(value, prefix + key + ".")
    return keys


def test_readme_names_only_params_that_exist():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    known = flat_keys(params)
    sections = "|".join(params)
    found = set(re.findall(rf"[`\s]((?:{sections})\.[a-z_][a-z_.]*[a-z_])", README.read_text()))
    named = {key for key in found if key.rsplit(".", 1)[1] not in FILE_EXTENSIONS}   # not mnist.npz
    assert named, "README names no params"
    for key in named:
        assert key.endswith("*") or key in known, f"README names {key}, which params.yaml does not have"


@pytest.mark.parametrize("pattern", [
    r"\b20\d\d-\d\d-\d\d\b", r"\btoday\b", r"\byesterday\b", r"\bthis session\b", r"\bthis machine\b",
    r"\bthis project's machine\b", r"\ba day later\b", r"\bon our\b",
])
def test_readme_has_no_dated_or_machine_specific_sentence(pattern):
    found = re.findall(pattern, README.read_text(), flags=re.I)
    assert not found, f"README says {found[0]!r}; measurements and their dates go to docs/benchmarks.md"


def test_readme_states_one_timing_the_default_run():
    timings = re.findall(r"(?<![\w.-])\d[\d.,]*\s*(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b",
                         README.read_text())
    assert len(timings) == 1, f"README states timings {timings}; only the default run's belongs there"
    assert re.search(r"about \d+(\s+to\s+\d+)?\s+minutes\s+on\s+a\s+2-core\s+machine", README.read_text())


def test_every_benchmark_section_says_when_where_and_how():
    sections = re.split(r"^## ", BENCHMARKS.read_text(), flags=re.M)[1:]
    measured = [s for s in sections if not s.startswith("Contents")]
    assert len(measured) >= 8
    for section in measured:
        title = section.splitlines()[0]
        header = " ".join(line for line in section.splitlines() if line.startswith(">"))
        assert re.search(r"Dates? ", header), f"{title}: no date"
        assert re.search(r"commits? ", header) or "same commit" in header, f"{title}: no commit"
        assert re.search(r"CPU", header), f"{title}: no CPU flags"
        assert re.search(r"command", header), f"{title}: no command"
