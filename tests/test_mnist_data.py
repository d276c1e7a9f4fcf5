"""prepare-mnist-subset's sources and its errors on bad input."""

import numpy as np
import pytest

from conftest import run_script
from fcnlab.core.errors import FcnlabError
from fcnlab.cae.data import prepare_mnist_subset
from fcnlab.core.mnist import load_mnist, stratified_test_mask


def write_npz(path, n_train=30, n_test=12, **overrides):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_embedded_source_is_stratified_and_seeded():
    x_train, y_train, x_test, y_test = load_mnist("embedded", test_fraction=0.2, seed=0)
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert np.bincount(y_test).tolist() == [100] * 10
    again = load_mnist("embedded", test_fraction=0.2, seed=0)
    other = load_mnist("embedded", test_fraction=0.2, seed=1)
    assert np.array_equal(again[3], y_test) and np.array_equal(again[2], x_test)
    assert not np.array_equal(other[2], x_test)


def test_subset_keeps_digits_scales_and_adds_channel():
    splits = prepare_mnist_subset(*load_mnist("embedded", 0.2, 0), digits=[1, 5, 6], origin="embedded")
    assert splits.train_x.shape == (1200, 28, 28, 1) and splits.test_x.shape == (300, 28, 28, 1)
    assert splits.train_x.dtype == np.float32
    assert 0.0 <= splits.train_x.min() and splits.train_x.max() == pytest.approx(1.0)
    assert set(np.unique(splits.test_y)) == {1, 5, 6}


def test_stratified_mask_takes_the_fraction_of_every_class():
    labels = np.repeat([0, 1, 2], [10, 20, 40])
    test = stratified_test_mask(labels, 0.25, seed=3)
    assert [int(test[labels == c].sum()) for c in (0, 1, 2)] == [2, 5, 10]


def test_npz_source_in_keras_layout(tmp_path):
    path = write_npz(tmp_path / "mnist.npz")
    splits = prepare_mnist_subset(*load_mnist(str(path), 0.2, 0), digits=[0, 3], origin=str(path))
    assert splits.train_x.shape == (6, 28, 28, 1) and splits.test_x.shape == (3, 28, 28, 1)
    assert set(splits.train_y) == {0, 3}


def test_npz_with_a_channel_axis_is_accepted(tmp_path):
    x = np.zeros((10, 28, 28, 1), np.uint8)
    path = write_npz(tmp_path / "m.npz", x_train=x, y_train=np.arange(10), x_test=x, y_test=np.arange(10))
    splits = prepare_mnist_subset(*load_mnist(str(path), 0.2, 0), digits=[1], origin=str(path))
    assert splits.train_x.shape == (1, 28, 28, 1)


@pytest.mark.parametrize("overrides, message", [
    ({"y_test": None}, "missing array(s) y_test"),
    ({"x_train": np.zeros((30, 32, 32), np.uint8)}, "must be N x 28 x 28"),
    ({"y_train": np.arange(29) % 10}, "labels must be a vector of length N"),
    ({"y_train": (np.arange(30) % 10).astype(float)}, "labels must be integers"),
    ({"x_train": np.full((30, 28, 28), np.nan)}, "outside 0..255 (or NaN/Inf)"),
    ({"x_train": np.full((30, 28, 28), 300.0)}, "outside 0..255"),
])
def test_bad_npz_is_refused_with_a_clear_message(tmp_path, overrides, message):
    path = write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(FcnlabError) as err:
        prepare_mnist_subset(*load_mnist(str(path), 0.2, 0), digits=[1], origin=str(path))
    assert message in str(err.value) and "bad.npz" in str(err.value)


def test_npz_holding_objects_is_refused_without_unpickling(tmp_path):
    path = write_npz(tmp_path / "objects.npz", y_train=np.array([object()] * 30))
    with pytest.raises(FcnlabError, match="objects.npz.*pickle"):
        load_mnist(str(path), 0.2, 0)


def test_missing_source_names_the_choices(tmp_path):
    with pytest.raises(FcnlabError, match="neither 'embedded', 'keras' nor an existing file"):
        load_mnist(str(tmp_path / "nope.npz"), 0.2, 0)


def test_corrupt_npz_is_refused(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FcnlabError, match="corrupt.npz: not a readable .npz"):
        load_mnist(str(path), 0.2, 0)


def test_digits_absent_from_the_data_are_named(tmp_path):
    path = write_npz(tmp_path / "m.npz", y_train=np.zeros(30, int), y_test=np.zeros(12, int))
    with pytest.raises(FcnlabError, match=r"no images of digit\(s\) \[7\]"):
        prepare_mnist_subset(*load_mnist(str(path), 0.2, 0), digits=[0, 7], origin=str(path))


@pytest.mark.integration
def test_keras_source_offline_fails_with_one_line_saying_what_to_set(tmp_path, offline_env):
    params = tmp_path / "params.yaml"
    params.write_text("mnist: {source: keras, digits: [1, 5, 6], test_fraction: 0.2, seed: 0}\n")
    result = run_script("prepare_mnist_subset.py", "--params", str(params), "--out", str(tmp_path / "out"),
                        "--summary", str(tmp_path / "summary.json"), env_extra=offline_env, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "mnist.source: embedded" in error_lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "summary.json").exists()


@pytest.mark.integration
def test_wrong_param_type_names_the_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("mnist: {source: embedded, digits: [1, 5, 6], test_fraction: 1.5, seed: 0}\n")
    result = run_script("prepare_mnist_subset.py", "--params", str(params), "--out", str(tmp_path / "out"),
                        "--summary", str(tmp_path / "summary.json"))
    assert result.returncode == 2
    assert "mnist.test_fraction must be a number in (0.0, 0.9]" in result.stderr
