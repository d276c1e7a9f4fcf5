"""Exported FCNs (SavedModel, TFLite, ONNX) compute what the .keras model computes.

A seeded narrow FCN-8s (head_width=8) is saved as .keras, loaded back with fcnlab's loader and
exported once in every format, sizes left free. Each artifact is then run by its own runtime
(TensorFlow, LiteRT, ONNX Runtime) on generated demo scenes.

Tolerance: PARITY_TOLERANCE = 1e-4 on every class probability. The formats reorder float32
sums (fused kernels, other convolution algorithms), which moves a probability by about 1e-6 on
this model; 1e-4 leaves room for other CPUs while any real conversion fault (a dropped
preprocessing layer, swapped channels, a wrong deconvolution) moves them by far more than that.
"""

import sys

import keras
import numpy as np
import pytest

from fcnlab.cli import main
from fcnlab.seg.demo_scenes import render_scenes
from fcnlab.core.errors import FcnlabError
from fcnlab.seg.model import check_segmentation_model, fcn8s_vgg16
from fcnlab.core.io import load_model, save_model
from fcnlab.seg import export
from fcnlab.seg.export import FORMATS, PARITY_TOLERANCE

SIDE_PX = 64


def ring_digits(count: int, seed: int) -> np.ndarray:
    """`count` 28 x 28 uint8 rings of random radius: stand-ins for MNIST digits."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:28, :28] - 13.5
    radius = np.hypot(rows, cols)
    return np.stack([((np.abs(radius - r) < 2.5) * 255).astype(np.uint8)
                     for r in rng.uniform(5, 11, count)])


def demo_images(count: int, side: int, seed: int) -> np.ndarray:
    images, _ = render_scenes(np.random.default_rng(seed), ring_digits(count, seed), side)
    return images.astype(np.float32)                                   # N x S x S x 3, 0..255


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "fcn.keras"
    save_model(fcn8s_vgg16(head_width=8), path)
    return path


@pytest.fixture(scope="module")
def model(model_file):
    return load_model(model_file, check=check_segmentation_model)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """{format: path} of the model exported in every format, height and width free."""
    return export.export_model(model, tmp_path_factory.mktemp("exported"), "fcn", FORMATS)


@pytest.mark.integration
def test_every_format_is_written_under_its_name(exported, tmp_path):
    assert list(exported) == list(FORMATS)
    assert exported["savedmodel"].name == "fcn_savedmodel" and exported["savedmodel"].is_dir()
    assert (exported["savedmodel"] / "saved_model.pb").is_file()
    assert exported["tflite"].name == "fcn.tflite" and exported["tflite"].stat().st_size > 0
    assert exported["onnx"].name == "fcn.onnx" and exported["onnx"].stat().st_size > 0
    leftovers = [p.name for p in exported["onnx"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []                         # no temporary files of the atomic writes


@pytest.mark.integration
def test_the_saved_model_stores_each_weight_once(exported, model):
    """keras-team/keras#23553: `model.export` would store every float32 weight twice."""
    stored = sum(p.stat().st_size for p in (exported["savedmodel"] / "variables").glob("variables.data-*"))
    assert 4 * model.count_params() <= stored < 1.05 * 4 * model.count_params()


@pytest.mark.integration
def test_the_saved_model_signature_maps_image_to_probabilities(exported):
    import tensorflow as tf

    serve = tf.saved_model.load(str(exported["savedmodel"])).signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["image"]
    assert list(serve.structured_outputs) == ["probabilities"]


@pytest.mark.integration
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_keras_probabilities(fmt, exported, model):
    images = demo_images(2, SIDE_PX, seed=1)
    expected = np.asarray(model(images, training=False))               # 2 x 64 x 64 x 2
    got = export.predict_exported(exported[fmt], images)
    assert got.shape == expected.shape == (2, SIDE_PX, SIDE_PX, 2)
    assert expected[..., 1].std() > 1e-3           # the model's output varies: a real comparison
    assert np.abs(got - expected).max() <= PARITY_TOLERANCE


@pytest.mark.integration
@pytest.mark.parametrize("fmt", FORMATS)
def test_free_size_exports_take_other_sizes_and_batches(fmt, exported, model):
    images = demo_images(3, 96, seed=2)[:, :, :64]                     # 3 x 96 x 64 x 3
    assert export.max_difference(model, exported[fmt], images) <= PARITY_TOLERANCE


def test_a_fixed_size_is_the_exported_input_shape(model):
    (spec,) = export.input_signature(model, 128)
    assert tuple(spec.shape) == (None, 128, 128, 3) and spec.name == "image"
    (free,) = export.input_signature(model)
    assert tuple(free.shape) == (None, None, None, 3)


def test_a_model_built_for_one_size_refuses_another():
    keras.utils.set_random_seed(0)
    fixed = fcn8s_vgg16(head_width=8, image_size=64)
    with pytest.raises(ValueError, match="only takes 64 x 64"):
        export.input_signature(fixed, 128)
    assert tuple(export.input_signature(fixed)[0].shape) == (None, 64, 64, 3)


@pytest.mark.parametrize("size", [0, 48, 100, 31])
def test_image_sizes_must_be_multiples_of_32(size, model):
    with pytest.raises(ValueError, match="multiple of 32"):
        export.input_signature(model, size)


def test_unknown_formats_are_refused():
    with pytest.raises(ValueError, match="choose from savedmodel, tflite, onnx"):
        export.check_formats(["tflite", "pb"])


def test_a_missing_runtime_package_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)          # as if it were not installed
    with pytest.raises(FcnlabError, match=r'tf2onnx; install them with pip install -e "\.\[export\]"'):
        export.check_packages(["savedmodel", "onnx"])
    export.check_packages(["savedmodel", "tflite"])            # the others do not need it


# --- The command line ---------------------------------------------------------------------------


def test_cli_exports_a_fixed_size_tflite_and_checks_it(model_file, model, tmp_path, capsys):
    status = main(["export", "--model", str(model_file), "--out", str(tmp_path / "out"),
                   "--formats", "tflite", "--image-size", "64"])
    out = capsys.readouterr().out
    assert status == 0, out
    written = tmp_path / "out" / "fcn.tflite"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fcn.tflite"]
    assert f"export: tflite: {written}" in out and "1 ok, 0 failed" in out
    images = demo_images(2, 64, seed=3)
    assert export.max_difference(model, written, images) <= PARITY_TOLERANCE
    with pytest.raises(ValueError, match=r"takes images of shape \(any, 64, 64, 3\)"):
        export.predict_exported(written, demo_images(1, 96, seed=3))


@pytest.mark.parametrize("args, message", [
    (["--formats", "tflite,pb"], "choose from savedmodel, tflite, onnx"),
    (["--image-size", "100"], "must be a positive multiple of 32"),
])
def test_cli_refuses_bad_arguments(args, message, model_file, tmp_path, capsys):
    status = main(["export", "--model", str(model_file), "--out", str(tmp_path / "out"), *args])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_model_of_the_wrong_kind(tmp_path, capsys):
    from fcnlab.cae.model import cae_encoder

    save_model(cae_encoder(), tmp_path / "encoder.keras")
    status = main(["export", "--model", str(tmp_path / "encoder.keras"), "--out", str(tmp_path / "out"),
                   "--formats", "savedmodel"])
    assert status == 2
    assert "not a 2-class segmentation model" in capsys.readouterr().err
