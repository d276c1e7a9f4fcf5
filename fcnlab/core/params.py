"""Read `params.yaml` and validate every value up front, naming the key that is wrong.

Stage scripts call `load_section("params.yaml", "cae")` and then ask for typed values:

    cae = load_section(params_file, "cae")
    epochs = cae.integer("epochs", minimum=1)

A wrong value stops the stage before any work with a message such as
`params.yaml: cae.epochs must be an integer >= 1, got -3`, and so does a key fcnlab does not
know (a misspelt `mnist.digit` would otherwise leave `mnist.digits` at its value unnoticed):
`params.yaml: unknown key mnist.digit; did you mean mnist.digits? ...`.

KNOWN_KEYS below is the one list of the keys params.yaml may hold; a new param is added there
and in params.yaml (tests/test_params.py checks the two agree).
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import yaml

from fcnlab.core.errors import FcnlabError

PRECISIONS = ("auto", "float32", "bfloat16")   # what fcn.precision, evaluate.precision and --precision may say

SHOWN_CHARS = 80  # how much of a wrong value an error message repeats

# Every key of params.yaml, by section; "seg.demo" is the section nested in seg under "demo".
KNOWN_KEYS = {
    "mnist": ("source", "digits", "test_fraction", "seed"),
    "cae": ("epochs", "batch_size", "learning_rate", "seed", "n_examples"),
    "latent": ("decode_points", "manifold_size", "explorer_grid_size", "knn_k", "scatter_points", "seed"),
    "seg": ("source", "path", "resize", "image_size", "foreground_value", "val_fraction", "test_fraction",
            "seed", "shard_megapixels", "demo"),
    "seg.demo": ("image_size", "n_train", "n_val", "n_test"),
    "fcn": ("encoder_weights", "freeze_encoder", "head_width", "score_relu", "vgg_preprocessing", "epochs",
            "batch_size", "learning_rate", "seed", "precision", "loss", "patch_size", "augment", "keep_best",
            "patience", "steps_per_epoch", "lr_schedule"),
    "evaluate": ("threshold", "n_thresholds", "precision", "baseline_margin"),
    "overlays": ("examples", "n_best_worst"),
    "train": ("strategy",),
}


def load_params(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FcnlabError(f"{path}: params file not found; run from the project root")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())  # YAML's message spans lines; the error is one line
        raise FcnlabError(f"{path}: not valid YAML ({reason}); fix the syntax there") from None
    except UnicodeDecodeError as err:
        raise FcnlabError(f"{path}: not a text file ({err}); save it as UTF-8 YAML") from None
    if not isinstance(data, dict):
        raise FcnlabError(f"{path}: must be a mapping of sections (mnist:, cae:, ...); fix it as in "
                          "the project's params.yaml")
    check_known_keys(data, path)
    return data


def check_known_keys(data: dict, path, section: str = "") -> None:
    """Refuse the first key of `data` (the whole file, or `section` of it) not in KNOWN_KEYS,
    naming the nearest known key. Values are left to the accessors that read them."""
    known = [name for name in KNOWN_KEYS if "." not in name] if not section else KNOWN_KEYS[section]
    for key, value in data.items():
        dotted = f"{section}.{key}" if section else str(key)
        if key not in known:
            raise FcnlabError(f"{path}: unknown key {dotted} (did you mean {_nearest(dotted, section, known)}?); "
                              f"fcnlab would ignore it, so fix its name in {path}")
        if dotted in KNOWN_KEYS and isinstance(value, dict):
            check_known_keys(value, path, dotted)


def _nearest(dotted: str, section: str, known) -> str:
    """The known key most like `dotted`: the same name in another section (fcn.threshold ->
    evaluate.threshold), else a close one in its own section, else the closest anywhere."""
    prefix = f"{section}." if section else ""
    siblings = [prefix + key for key in known]
    everywhere = [f"{name}.{key}" for name, keys in KNOWN_KEYS.items() for key in keys] + list(KNOWN_KEYS)
    key = dotted[len(prefix):]
    elsewhere = [name for name in everywhere if name.rsplit(".", 1)[-1] == key]
    if elsewhere:
        return elsewhere[0]
    close = difflib.get_close_matches(dotted, siblings, n=1, cutoff=0.6)
    return (close or difflib.get_close_matches(dotted, everywhere, n=1, cutoff=0.0))[0]


def load_section(path, name: str) -> "Section":
    data = load_params(path)
    if not isinstance(data.get(name), dict):
        raise FcnlabError(f"{path}: section '{name}:' is missing or not a mapping; add it as in "
                          "the project's params.yaml")
    return Section(Path(path).name, name, data[name])


class Section:
    """One params section with typed, range-checked accessors."""

    def __init__(self, file_name: str, name: str, values: dict):
        self.file_name, self.name, self.values = file_name, name, values

    def _fail(self, key: str, expectation: str):
        shown = repr(self.values.get(key, "<missing>"))
        if len(shown) > SHOWN_CHARS:  # a huge value would swamp the one-line message
            shown = shown[:SHOWN_CHARS - 3] + "..."
        raise FcnlabError(
            f"{self.file_name}: {self.name}.{key} must be {expectation}, got {shown}; "
            f"fix it in {self.file_name}"
        )

    def _get(self, key: str, expectation: str):
        if key not in self.values:
            self._fail(key, expectation)
        return self.values[key]

    def section(self, key: str) -> "Section":
        value = self._get(key, "a mapping")
        if not isinstance(value, dict):
            self._fail(key, "a mapping")
        return Section(self.file_name, f"{self.name}.{key}", value)

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None,
                multiple_of: int | None = None) -> int:
        expectation = "an integer" + _range_text(minimum, maximum)
        if multiple_of is not None:
            expectation += f" that is a multiple of {multiple_of}"
        value = self._get(key, expectation)
        if (isinstance(value, bool) or not isinstance(value, int) or not _in_range(value, minimum, maximum)
                or (multiple_of is not None and value % multiple_of)):
            self._fail(key, expectation)
        return value

    def choice(self, key: str, options) -> str:
        expectation = "one of " + ", ".join(str(option) for option in options)
        value = self._get(key, expectation)
        if isinstance(value, bool) or value not in options:
            self._fail(key, expectation)
        return value

    def number(self, key: str, minimum: float | None = None, maximum: float | None = None,
               exclusive_minimum: bool = False) -> float:
        expectation = "a number" + _range_text(minimum, maximum, exclusive_minimum)
        value = self._get(key, expectation)
        if not _is_finite_number(value):
            self._fail(key, expectation)
        if not _in_range(value, minimum, maximum) or (exclusive_minimum and value == minimum):
            self._fail(key, expectation)
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self._get(key, "true or false")
        if not isinstance(value, bool):
            self._fail(key, "true or false")
        return value

    def string(self, key: str) -> str:
        value = self._get(key, "a non-empty string")
        if not isinstance(value, str) or not value.strip():
            self._fail(key, "a non-empty string")
        return value

    def int_list(self, key: str, minimum: int | None = None, maximum: int | None = None,
                 min_length: int = 1, unique: bool = True) -> list[int]:
        expectation = f"a list of at least {min_length} integers" + _range_text(minimum, maximum)
        if unique:
            expectation += " without repeats"
        value = self._get(key, expectation)
        if (not isinstance(value, list) or len(value) < min_length
                or any(isinstance(v, bool) or not isinstance(v, int) or not _in_range(v, minimum, maximum)
                       for v in value)
                or (unique and len(set(value)) != len(value))):
            self._fail(key, expectation)
        return list(value)

    def number_pairs(self, key: str) -> list[tuple[float, float]]:
        expectation = "a non-empty list of [z1, z2] pairs of finite numbers"
        value = self._get(key, expectation)
        ok = isinstance(value, list) and len(value) >= 1 and all(
            isinstance(p, list) and len(p) == 2
            and all(_is_finite_number(v) for v in p) for p in value)
        if not ok:
            self._fail(key, expectation)
        return [(float(a), float(b)) for a, b in value]


def _is_finite_number(value) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite and fits in a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _in_range(value, minimum, maximum) -> bool:
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def _range_text(minimum, maximum, exclusive_minimum: bool = False) -> str:
    low = ">" if exclusive_minimum else ">="
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]" if not exclusive_minimum else f" in ({minimum}, {maximum}]"
    if minimum is not None:
        return f" {low} {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
