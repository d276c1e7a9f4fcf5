"""Atomic, deterministic writes and safe reads."""

import keras
import numpy as np
import pytest

from fcnlab.cae.model import cae_decoder
from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import atomic_path, load_model, load_npy, save_arrays, save_json, save_model


def test_atomic_path_leaves_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.json"
    save_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_directory_replaces_the_whole_directory(tmp_path):
    save_arrays(tmp_path / "arrays", a=np.arange(3), b=np.ones(2))
    save_arrays(tmp_path / "arrays", c=np.zeros(1))
    assert sorted(p.name for p in (tmp_path / "arrays").iterdir()) == ["c.npy"]


def test_saved_model_bytes_depend_only_on_the_weights(tmp_path):
    keras.utils.set_random_seed(0)
    first = cae_decoder()
    keras.utils.set_random_seed(0)
    second = cae_decoder()  # a different Python object, so different id()s inside Keras's config
    save_model(first, tmp_path / "a.keras")
    save_model(second, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()


def test_saved_model_loads_and_predicts_the_same(tmp_path):
    model = cae_decoder()
    save_model(model, tmp_path / "d.keras")
    z = np.array([[[[0.5, -1.0]]]], np.float32)
    np.testing.assert_array_equal(load_model(tmp_path / "d.keras").predict(z, verbose=0),
                                  model.predict(z, verbose=0))


def test_model_with_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "evil.keras")
    with pytest.raises(FcnlabError, match="evil.keras: the model contains a Lambda layer"):
        load_model(tmp_path / "evil.keras")


def test_npy_needing_pickle_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FcnlabError, match="obj.npy: holds Python objects that need pickle"):
        load_npy(tmp_path / "obj.npy")


def test_truncated_npy_is_refused(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((100, 100)))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(FcnlabError, match="t.npy: "):
        load_npy(tmp_path / "t.npy")
