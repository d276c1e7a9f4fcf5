"""params.yaml validation names the key, the expectation and the file."""

import pytest

from fcnlab.core.errors import FcnlabError
from fcnlab.core.params import Section, load_section


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
    from conftest import ROOT
    for name in ("mnist", "cae", "latent"):
        assert load_section(ROOT / "params.yaml", name).values
