"""params.yaml validation names the key, the expectation and the file; an unknown key is an error."""

import json

import pytest
import yaml

from conftest import ROOT, run_script
from fcnlab.core.errors import FcnlabError
from fcnlab.core.params import KNOWN_KEYS, Section, load_params, load_section

SHIPPED = (ROOT / "params.yaml").read_text()


def section(**values):
    return Section("params.yaml", "cae", values)


@pytest.mark.parametrize("value", [0, -1, 2.5, "10", True, None])
def test_integer_out_of_range_or_wrong_type_is_refused(value):
    with pytest.raises(FcnlabError, match=r"params.yaml: cae.epochs must be an integer >= 1"):
        section(epochs=value).integer("epochs", minimum=1)


def test_missing_key_is_named():
    with pytest.raises(FcnlabError, match=r"cae.epochs must be an integer >= 1, got '<missing>'"):
        section().integer("epochs", minimum=1)


@pytest.mark.parametrize("value", [0.0, -1e-3, float("nan"), "fast", False])
def test_number_with_exclusive_minimum(value):
    with pytest.raises(FcnlabError, match="cae.learning_rate must be a number > 0"):
        section(learning_rate=value).number("learning_rate", minimum=0.0, exclusive_minimum=True)


def test_valid_values_come_back_typed():
    s = section(epochs=3, learning_rate=1e-3, digits=[1, 5], flag=True, points=[[1, 2], [-8, 0.5]])
    assert s.integer("epochs", minimum=1) == 3
    assert s.number("learning_rate", minimum=0.0) == 0.001
    assert s.int_list("digits", minimum=0, maximum=9) == [1, 5]
    assert s.boolean("flag") is True
    assert s.number_pairs("points") == [(1.0, 2.0), (-8.0, 0.5)]


@pytest.mark.parametrize("value", [[], [1, 1], [1, 10], "1,5,6"])
def test_int_list_refuses_empty_repeated_or_out_of_range(value):
    with pytest.raises(FcnlabError, match="cae.digits must be a list"):
        section(digits=value).int_list("digits", minimum=0, maximum=9)


def test_missing_section_and_bad_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("mnist: {}\n")
    with pytest.raises(FcnlabError, match="section 'cae:' is missing"):
        load_section(path, "cae")
    path.write_text("cae: [unclosed\n")
    with pytest.raises(FcnlabError, match="not valid YAML"):
        load_section(path, "cae")


def test_the_shipped_params_file_passes_every_stage_validation():
    """Every section the stages read exists in the project's params.yaml."""
    for name in ("mnist", "cae", "latent"):
        assert load_section(ROOT / "params.yaml", name).values


def dotted_keys(mapping: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in mapping.items():
        keys.add(prefix + key)
        if f"{prefix}{key}" in KNOWN_KEYS:
            keys |= dotted_keys(value, f"{prefix}{key}.")
    return keys


def test_known_keys_are_exactly_the_shipped_params_file_keys():
    """KNOWN_KEYS (fcnlab/core/params.py) and params.yaml name the same keys: a param added to
    one is added to the other."""
    known = {name for name in KNOWN_KEYS if "." not in name}
    known |= {f"{section}.{key}" for section, keys in KNOWN_KEYS.items() for key in keys}
    assert dotted_keys(yaml.safe_load(SHIPPED)) == known


def params_with(tmp_path, old: str, new: str):
    assert SHIPPED.count(old) >= 1, old
    path = tmp_path / "params.yaml"
    path.write_text(SHIPPED.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("  digits: [1, 5, 6]", "  digit: [1, 5, 6]", "unknown key mnist.digit (did you mean mnist.digits?)"),
    ("  epochs: 30 ", "  epoch: 30 ", "unknown key cae.epoch (did you mean cae.epochs?)"),
    ("    n_val: 32", "    n_vall: 32", "unknown key seg.demo.n_vall (did you mean seg.demo.n_val?)"),
    ("overlays:", "overlay:", "unknown key overlay (did you mean overlays?)"),
    ("  keep_best: true ", "  threshold: 0.4\n  keep_best: true ",
     "unknown key fcn.threshold (did you mean evaluate.threshold?)"),
])
def test_an_unknown_key_in_any_section_names_it_the_file_and_the_nearest_known_key(tmp_path, old, new, message):
    path = params_with(tmp_path, old, new)
    with pytest.raises(FcnlabError) as caught:
        load_params(path)
    assert str(caught.value) == f"{path}: {message}; fcnlab would ignore it, so fix its name in {path}"


def test_every_section_is_checked_whichever_section_a_stage_reads(tmp_path):
    path = params_with(tmp_path, "  n_best_worst: 4", "  n_best_worst: 4\n  n_worst: 2")
    with pytest.raises(FcnlabError, match="unknown key overlays.n_worst"):
        load_section(path, "mnist")


def test_a_stage_given_an_unknown_key_exits_2_with_one_line_before_any_work(tmp_path):
    params = params_with(tmp_path, "  digits: [1, 5, 6]", "  digit: [1, 5, 6]")
    result = run_script("prepare_mnist_subset.py", "--params", str(params), "--out", str(tmp_path / "out"),
                        "--summary", str(tmp_path / "summary.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {params}: unknown key mnist.digit (did you mean mnist.digits?); fcnlab would ignore it, "
        f"so fix its name in {params}"]
    assert not (tmp_path / "out").exists()


def prepare_demo(tmp_path, **seg):
    params = yaml.safe_load(SHIPPED)
    params["seg"].update(seg)
    params["seg"]["demo"].update(image_size=64, n_train=4, n_val=2, n_test=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return run_script("prepare_seg.py", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "seg"),
                      "--summary", str(tmp_path / "summary.json"), cwd=tmp_path)


def test_prepare_seg_says_when_the_demo_replaces_resize_and_image_size(tmp_path):
    result = prepare_demo(tmp_path, source="demo", resize="keep_aspect", image_size=512)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "note: prepare-seg: the demo scenes are drawn at seg.demo.image_size (64 x 64), so seg.resize "
        "(keep_aspect) and seg.image_size (512) are not used; they apply to the npy and folder sources"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["resize"], summary["image_size"]) == ("square", 64)


def test_prepare_seg_says_nothing_when_the_demo_matches_them(tmp_path):
    result = prepare_demo(tmp_path, source="demo", resize="square", image_size=64)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
