"""FCN-8s on VGG16 (fcnlab.seg.model): the seed's layers, any image size, preprocessing, weights, saving.

Models here use a tiny head (width 8) and small images so the file runs in seconds on a CPU.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras
import numpy as np
import pytest

from fcnlab.seg import model as fcn
from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import load_model, save_model

HEAD_WIDTH = 8
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def tiny_fcn(seed: int = 0, **kwargs) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return fcn.fcn8s_vgg16(head_width=kwargs.pop("head_width", HEAD_WIDTH), **kwargs)


def random_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return tiny_fcn()


# --- Shapes and layers --------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(32, 32), (64, 64), (96, 128)])
def test_output_has_the_input_size_for_any_multiple_of_32(model, height, width):
    probabilities = model.predict(random_images(2, height, width), verbose=0)
    assert probabilities.shape == (2, height, width, 2)


def test_output_is_a_probability_per_class(model):
    probabilities = model.predict(random_images(2, 64, 64), verbose=0)
    assert probabilities.min() >= 0
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)


def test_fixed_image_size_gives_static_shapes():
    fixed = tiny_fcn(image_size=(64, 96), n_classes=3)
    assert fixed.input.shape == (None, 64, 96, 3)
    assert fixed.output.shape == (None, 64, 96, 3)


@pytest.mark.parametrize("image_size", [48, 100, (64, 30), 0])
def test_image_size_not_a_multiple_of_32_is_refused(image_size):
    with pytest.raises(FcnlabError, match="multiples of 32"):
        fcn.fcn8s_vgg16(head_width=HEAD_WIDTH, image_size=image_size)


def test_layers_are_input_preprocess_vgg16_then_the_seeds_head(model):
    names = [layer.name for layer in model.layers]
    assert names == ["image", "vgg_preprocess", *fcn.encoder_layer_names(), *fcn.HEAD_LAYER_NAMES]
    assert inbound_layer_names(model, "block1_conv1") == ["vgg_preprocess"]


def test_encoder_is_keras_vgg16_without_top(model):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    assert fcn.encoder_layer_names() == tuple(layer.name for layer in vgg.layers[1:])
    convs = [layer for layer in model.layers if layer.name.startswith("block") and "conv" in layer.name]
    assert len(convs) == 13
    assert all(layer.kernel_size == (3, 3) for layer in convs)
    for name in fcn.encoder_layer_names():
        assert model.get_layer(name).get_config() | {"trainable": None} == \
            vgg.get_layer(name).get_config() | {"trainable": None}
    assert sum(layer.count_params() for layer in vgg.layers) == fcn.encoder_parameter_count() == 14_714_688


def test_head_shapes_follow_the_seed_at_64_px():
    fixed = tiny_fcn(image_size=64)
    shapes = {name: fixed.get_layer(name).output.shape[1:] for name in
              ("block3_pool", "block4_pool", "block5_pool", *fcn.HEAD_LAYER_NAMES)}
    assert shapes == {
        "block3_pool": (8, 8, 256), "block4_pool": (4, 4, 512), "block5_pool": (2, 2, 512),
        "conv6": (2, 2, HEAD_WIDTH), "fc7": (2, 2, HEAD_WIDTH), "score": (2, 2, 2),
        "up2_pool5": (4, 4, 512), "fuse_pool4": (4, 4, 512),
        "up2_fuse": (8, 8, 256), "fuse_pool3": (8, 8, 256), "up8_softmax": (64, 64, 2),
    }
    kernels = {name: fixed.get_layer(name).kernel_size for name in
               ("conv6", "fc7", "score", "up2_pool5", "up2_fuse", "up8_softmax")}
    assert kernels == {"conv6": (7, 7), "fc7": (1, 1), "score": (1, 1),
                       "up2_pool5": (4, 4), "up2_fuse": (4, 4), "up8_softmax": (16, 16)}
    assert [fixed.get_layer(name).strides for name in ("up2_pool5", "up2_fuse", "up8_softmax")] == \
        [(2, 2), (2, 2), (8, 8)]


def test_skip_connections_add_pool4_and_pool3(model):
    assert inbound_layer_names(model, "fuse_pool4") == ["up2_pool5", "block4_pool"]
    assert inbound_layer_names(model, "fuse_pool3") == ["up2_fuse", "block3_pool"]
    assert inbound_layer_names(model, "conv6") == ["block5_pool"]


def inbound_layer_names(model, name) -> list[str]:
    """The layers feeding `name`, read from the model's saved config (what a reload rebuilds)."""
    found = []

    def visit(node):
        if isinstance(node, dict):
            if "keras_history" in node:
                found.append(node["keras_history"][0])
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    layer_config = next(layer for layer in model.get_config()["layers"] if layer["name"] == name)
    visit(layer_config["inbound_nodes"])
    return found


@pytest.mark.parametrize("n_classes", [2, 3])
def test_head_parameter_count_matches_the_closed_form(n_classes):
    built = tiny_fcn(n_classes=n_classes)
    head = sum(built.get_layer(name).count_params() for name in fcn.HEAD_LAYER_NAMES)
    w, n = HEAD_WIDTH, n_classes
    assert head == fcn.head_parameter_count(w, n) == (
        7 * 7 * 512 * w + w + w * w + w + w * n + n
        + 4 * 4 * n * 512 + 512 + 4 * 4 * 512 * 256 + 256 + 16 * 16 * 256 * n + n)
    preprocess = 3 * 3 + 3
    assert built.count_params() == fcn.encoder_parameter_count() + head + preprocess


def test_seed_head_width_4096_has_121_8_million_parameters():
    assert fcn.head_parameter_count(4096, 2) == 121_799_428


# --- Options ------------------------------------------------------------------------------------


def test_freeze_encoder_leaves_only_the_head_trainable(model):
    trainable = {weight.path.split("/")[0] for weight in model.trainable_weights}
    assert trainable == {"conv6", "fc7", "score", "up2_pool5", "up2_fuse", "up8_softmax"}
    assert all(not model.get_layer(name).trainable for name in fcn.encoder_layer_names())


def test_unfrozen_encoder_trains_everything_but_the_preprocessing():
    unfrozen = tiny_fcn(freeze_encoder=False)
    assert all(unfrozen.get_layer(name).trainable for name in fcn.encoder_layer_names())
    assert not unfrozen.get_layer("vgg_preprocess").trainable
    assert len(unfrozen.trainable_weights) == 2 * 13 + 2 * 6


def test_score_relu_toggles_the_relu_on_the_class_scores(model):
    assert model.get_layer("score").get_config()["activation"] == "linear"
    assert tiny_fcn(score_relu=True).get_layer("score").get_config()["activation"] == "relu"


def test_vgg_preprocessing_equals_keras_preprocess_input(model):
    images = random_images(2, 32, 64)
    preprocess = keras.Model(model.input, model.get_layer("vgg_preprocess").output)
    expected = keras.applications.vgg16.preprocess_input(images.astype("float32"))
    np.testing.assert_allclose(preprocess.predict(images, verbose=0), expected, rtol=0, atol=1e-4)


def test_without_vgg_preprocessing_vgg16_sees_raw_pixels():
    raw = tiny_fcn(vgg_preprocessing=False)
    assert "vgg_preprocess" not in [layer.name for layer in raw.layers]
    assert inbound_layer_names(raw, "block1_conv1") == ["image"]


def test_uint8_and_float_pixels_give_the_same_prediction(model):
    images = random_images(1, 32, 32)
    np.testing.assert_array_equal(model.predict(images, verbose=0),
                                  model.predict(images.astype("float32"), verbose=0))


def test_same_seed_gives_the_same_initial_model():
    images = random_images(1, 32, 32)
    first, second = tiny_fcn(seed=3), tiny_fcn(seed=3)
    np.testing.assert_array_equal(first.predict(images, verbose=0), second.predict(images, verbose=0))


# --- Encoder weights ----------------------------------------------------------------------------


def test_encoder_weights_from_a_weights_file_are_loaded(tmp_path):
    keras.utils.set_random_seed(7)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    loaded = tiny_fcn(seed=0, encoder_weights=str(path))
    for name in fcn.encoder_layer_names():
        for saved, got in zip(vgg.get_layer(name).get_weights(), loaded.get_layer(name).get_weights()):
            np.testing.assert_array_equal(saved, got)


def test_missing_weights_file_names_the_file(tmp_path):
    path = tmp_path / "no_such_vgg16.h5"
    with pytest.raises(FcnlabError, match="no_such_vgg16.h5: file not found"):
        fcn.fcn8s_vgg16(head_width=HEAD_WIDTH, encoder_weights=str(path))


@pytest.mark.parametrize("kind", ["not_hdf5", "other_model", "unknown_suffix"])
def test_incompatible_weights_file_names_the_file(tmp_path, kind):
    if kind == "other_model":
        path = tmp_path / "small.weights.h5"
        small = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="block1_conv1")])
        small.save_weights(path)
    else:
        path = tmp_path / ("junk.h5" if kind == "not_hdf5" else "weights.txt")
        path.write_text("not weights")
    with pytest.raises(FcnlabError, match=f"{path.name}: not VGG16 no-top weights"):
        fcn.fcn8s_vgg16(head_width=HEAD_WIDTH, encoder_weights=str(path))


def _imagenet_weights_cached() -> bool:
    keras_home = os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))
    return Path(keras_home, "models", VGG16_NOTOP_FILE).exists()


@pytest.mark.skipif(_imagenet_weights_cached(), reason="ImageNet weights are cached, Keras won't download")
def test_imagenet_weights_offline_raise_fcnlab_error_naming_the_alternatives(monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)       # offline, even on a machine that isn't
    with pytest.raises(FcnlabError) as raised:
        fcn.fcn8s_vgg16(head_width=HEAD_WIDTH, encoder_weights="imagenet")
    message = str(raised.value)
    assert "fcn.encoder_weights: none" in message and VGG16_NOTOP_FILE in message


@pytest.mark.skipif(_imagenet_weights_cached(), reason="ImageNet weights are cached, Keras won't download")
def test_stalled_imagenet_download_times_out_instead_of_hanging(monkeypatch):
    silent_server = socket.create_server(("127.0.0.1", 0))   # accepts TCP, never answers TLS
    address = silent_server.getsockname()
    real_getaddrinfo = socket.getaddrinfo

    def to_silent_server(host, port, *args, **kwargs):
        return real_getaddrinfo(address[0], address[1], *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", to_silent_server)
    monkeypatch.setattr(fcn, "DOWNLOAD_TIMEOUT_SECONDS", 1)
    try:
        with pytest.raises(FcnlabError, match="timed out"):
            fcn.fcn8s_vgg16(head_width=HEAD_WIDTH, encoder_weights="imagenet")
    finally:
        silent_server.close()
    assert socket.getdefaulttimeout() is None


# --- Saving -------------------------------------------------------------------------------------


def test_save_and_safe_mode_load_give_identical_predictions(model, tmp_path):
    path = tmp_path / "fcn.keras"
    save_model(model, path)
    loaded = load_model(path)               # safe mode: would refuse a Lambda layer
    images = random_images(2, 64, 96)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


# --- FLOPs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size, vgg_preprocessing", [(64, True), ((64, 96), False)])
def test_forward_flops_match_the_built_layers(image_size, vgg_preprocessing):
    built = tiny_fcn(image_size=image_size, n_classes=3, vgg_preprocessing=vgg_preprocessing)
    macs = 0
    for layer in built.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):       # scatters each input pixel
            macs += np.prod(layer.input.shape[1:3]) * np.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Conv2D):               # gathers for each output pixel
            macs += np.prod(layer.output.shape[1:3]) * np.prod(layer.kernel.shape)
    assert fcn.forward_flops(image_size, head_width=HEAD_WIDTH, n_classes=3,
                             vgg_preprocessing=vgg_preprocessing) == 2 * macs


def test_forward_flops_of_the_seed_model():
    assert fcn.forward_flops(224) == 43_438_868_480
    assert fcn.forward_flops(128) == 14_184_120_320
