"""constraints.txt pins every dependency pyproject.toml declares, inside its declared range, at
the version installed here: the versions the outputs and these tests were made with."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Besides the declared ones: what trained models (HDF5 weights, bfloat16) and exported files are made of.
OUTPUT_BYTES = ("tensorflow", "keras", "numpy", "pillow", "matplotlib", "mlxtend", "h5py", "ml-dtypes",
                "protobuf", "flatbuffers")


def pins() -> dict[str, str]:
    """{canonical name: version} of constraints.txt's `name==version` lines."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", line)
            assert match, f"constraints.txt: {line!r} is not name==version"
            name = canonicalize_name(match[1])
            assert name not in found, f"constraints.txt pins {name} twice"
            found[name] = match[2]
    return found


def declared() -> list[Requirement]:
    """[project] dependencies and every extra's, without fcnlab's references to its own extras."""
    lines = list(PYPROJECT["dependencies"])
    for extra in PYPROJECT["optional-dependencies"].values():
        lines += extra
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if canonicalize_name(r.name) != canonicalize_name(PYPROJECT["name"])]


def test_every_declared_dependency_is_pinned_inside_its_range():
    pinned = pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"constraints.txt: no pin for {requirement} (pyproject.toml)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), \
            f"constraints.txt: {name}=={pinned[name]} is outside pyproject.toml's {requirement}"


def test_the_packages_the_outputs_bytes_depend_on_are_pinned():
    assert set(map(canonicalize_name, OUTPUT_BYTES)) <= set(pins())


def test_the_pins_are_the_installed_versions():
    """The environment running these tests is the one the pins describe (install it with
    `pip install -c constraints.txt -e ".[test]"`)."""
    wrong = {}
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            wrong[name] = f"pinned {pinned}, installed {installed}"
    assert wrong == {}


def test_pandas_is_not_a_dependency_and_nothing_imports_it():
    assert "pandas" not in {canonicalize_name(r.name) for r in declared()}
    sources = [*(ROOT / "fcnlab").rglob("*.py"), *(ROOT / "stages").glob("*.py")]
    assert [path.name for path in sources if re.search(r"^\s*(import|from) pandas\b", path.read_text(), re.M)] == []


def test_the_gpu_extra_installs_tensorflow_with_cuda():
    (gpu,) = map(Requirement, PYPROJECT["optional-dependencies"]["gpu"])
    assert (canonicalize_name(gpu.name), gpu.extras) == ("tensorflow", {"and-cuda"})
    (cpu,) = [r for r in map(Requirement, PYPROJECT["dependencies"]) if r.name == "tensorflow"]
    assert gpu.specifier == cpu.specifier
