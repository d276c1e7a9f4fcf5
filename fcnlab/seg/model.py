"""FCN-8s on a VGG16 encoder: the seed's section 2.4, layer by layer.

    image HxWx3, RGB pixels 0..255
      │ vgg_preprocess (optional, 1x1 conv)  RGB -> BGR, minus ImageNet means  HxWx3
      │ VGG16 blocks 1-3 ─► block3_pool ──────────────────────────┐    H/8  x W/8  x 256
      │ VGG16 block 4    ─► block4_pool ─────────────┐            │    H/16 x W/16 x 512
      │ VGG16 block 5    ─► block5_pool              │            │    H/32 x W/32 x 512
      │ conv6        7x7 conv, w, relu               │            │    H/32 x W/32 x w
      │ fc7          1x1 conv, w, relu               │            │    H/32 x W/32 x w
      │ score        1x1 conv, n (relu: seed only)   │            │    H/32 x W/32 x n
      │ up2_pool5    4x4 deconv /2, 512              │            │    H/16 x W/16 x 512
      │ fuse_pool4   add ◄───────────────────────────┘            │    H/16 x W/16 x 512
      │ up2_fuse     4x4 deconv /2, 256                           │    H/8  x W/8  x 256
      │ fuse_pool3   add ◄────────────────────────────────────────┘    H/8  x W/8  x 256
      ▼ up8_softmax  16x16 deconv /8, n, softmax                       H    x W    x n

(w = `head_width`, 4096 in the seed; n = `n_classes`, 2 in the seed: channel 1 is the
foreground probability.) Like the seed, the skip connections add the upsampled head straight
onto VGG16's pool4 and pool3 maps, which is why the two deconvolutions have 512 and 256
filters; the FCN paper instead scores pool4/pool3 with 1x1 convs first. The seed's layers are
kept; three of its choices are parameters (params.yaml's `fcn:` section notes the seed's value
beside each):

- `score_relu`: the seed puts a ReLU on the class scores. Scores that go negative then
  pass no gradient, which stalls training; params.yaml turns it off.
- `vgg_preprocessing`: the seed feeds its images to VGG16 untouched (section 2.4 never
  rescales or preprocesses them; whatever range its .npy files hold goes straight in). VGG16's
  ImageNet weights expect Keras' "caffe" preprocessing, so with this on the model applies
  exactly `keras.applications.vgg16.preprocess_input` itself, as its first layer. Either way
  the model's input is raw RGB pixels in 0..255, so callers never preprocess.
- `encoder_weights`: the seed uses ImageNet weights; offline runs use "none" (random) or a
  weights file.

The preprocessing is a frozen 1x1 convolution (a channel-swap matrix and the negative means as
bias), not a Lambda layer, so the saved `.keras` file loads in Keras safe mode with no custom
code. The spatial input size may be None x None: the model then takes any multiple of 32.
"""

from __future__ import annotations

import contextlib
import socket
import warnings
from pathlib import Path

import keras
import numpy as np
from keras import layers

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import describe_shapes, single_io_shape
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE

# VGG16's convolutions, block by block (filters of each 3x3 conv); a 2x2 max-pool ends each block.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# keras.applications.vgg16.preprocess_input ("caffe" mode) subtracts these, in BGR order.
IMAGENET_MEANS_BGR = (103.939, 116.779, 123.68)
HEAD_LAYER_NAMES = ("conv6", "fc7", "score", "up2_pool5", "fuse_pool4", "up2_fuse",
                    "fuse_pool3", "up8_softmax")
DOWNLOAD_TIMEOUT_SECONDS = 30     # a stalled ImageNet download fails instead of hanging


def encoder_layer_names() -> tuple[str, ...]:
    """VGG16's layer names without its top, in order: block1_conv1, ..., block5_pool."""
    names = []
    for block, filters in enumerate(VGG16_BLOCKS, start=1):
        names += [f"block{block}_conv{i}" for i in range(1, len(filters) + 1)]
        names.append(f"block{block}_pool")
    return tuple(names)


def fcn8s_vgg16(n_classes: int = 2, head_width: int = 4096, encoder_weights: str | None = "none",
                freeze_encoder: bool = True, score_relu: bool = False,
                vgg_preprocessing: bool = True, image_size=None) -> keras.Model:
    """The seed's FCN-8s: image (N, H, W, 3) RGB 0..255 -> class probabilities (N, H, W, n).

    encoder_weights: "none" (random; seed it with keras.utils.set_random_seed), "imagenet"
    (downloaded by Keras, or taken from its cache) or the path of a VGG16 no-top weights file.
    image_size: None (any H, W that are multiples of 32), an int, or (height, width).
    """
    height, width = _height_width(image_size)
    vgg = _vgg16_without_top(encoder_weights, (height, width, 3))

    image = keras.Input(shape=(height, width, 3), name="image")                       # HxWx3
    x = _vgg_preprocess_layer()(image) if vgg_preprocessing else image                # HxWx3
    encoder = {}
    for layer in vgg.layers[1:]:                # the seed's base_model, minus its input layer
        layer.trainable = not freeze_encoder
        x = layer(x)
        encoder[layer.name] = x
    # encoder: block3_pool H/8 x 256, block4_pool H/16 x 512, block5_pool H/32 x 512

    x = layers.Conv2D(head_width, (7, 7), padding="same", activation="relu",
                      name="conv6")(encoder["block5_pool"])                           # H/32 x w
    x = layers.Conv2D(head_width, (1, 1), padding="same", activation="relu", name="fc7")(x)
    x = layers.Conv2D(n_classes, (1, 1), padding="same", activation="relu" if score_relu else None,
                      name="score")(x)                                                # H/32 x n
    x = layers.Conv2DTranspose(512, (4, 4), strides=(2, 2), padding="same",
                               name="up2_pool5")(x)                                   # H/16 x 512
    x = layers.Add(name="fuse_pool4")([x, encoder["block4_pool"]])
    x = layers.Conv2DTranspose(256, (4, 4), strides=(2, 2), padding="same",
                               name="up2_fuse")(x)                                    # H/8 x 256
    x = layers.Add(name="fuse_pool3")([x, encoder["block3_pool"]])
    probabilities = layers.Conv2DTranspose(n_classes, (16, 16), strides=(8, 8), padding="same",
                                           activation="softmax", name="up8_softmax")(x)  # H x W x n
    return keras.Model(image, probabilities, name="fcn8s_vgg16")


def _height_width(image_size) -> tuple[int | None, int | None]:
    if image_size is None:
        return None, None
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    for side in (height, width):
        if side is not None and (int(side) != side or side < IMAGE_SIZE_MULTIPLE
                                 or side % IMAGE_SIZE_MULTIPLE):
            raise FcnlabError(
                f"image size {image_size}: FCN-8s needs height and width that are positive "
                f"multiples of {IMAGE_SIZE_MULTIPLE} (its five pools halve them); set "
                "seg.image_size to e.g. 128 or 224")
    return height, width


def _vgg_preprocess_layer() -> layers.Conv2D:
    """A frozen 1x1 conv computing VGG16's caffe preprocessing: RGB -> BGR, minus the means."""
    layer = layers.Conv2D(3, (1, 1), name="vgg_preprocess", trainable=False)
    layer.build((None, None, None, 3))
    swap_rgb_bgr = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)    # kernel[0, 0, in, out]
    layer.set_weights([swap_rgb_bgr, -np.array(IMAGENET_MEANS_BGR, dtype="float32")])
    return layer


def _vgg16_without_top(encoder_weights, input_shape) -> keras.Model:
    if encoder_weights is None or encoder_weights == "none":
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if encoder_weights == "imagenet":
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_SECONDS):
                return keras.applications.VGG16(include_top=False, weights="imagenet",
                                                input_shape=input_shape)
        except Exception as err:  # Keras raises a bare Exception for a failed download
            raise FcnlabError(
                f"fcn.encoder_weights: imagenet: could not get VGG16's ImageNet weights ({err}). "
                "Keras downloads them on first use, which needs internet. Offline, set "
                "fcn.encoder_weights: none (random encoder), or download "
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere and set "
                "fcn.encoder_weights to its path (or copy it to ~/.keras/models/)") from None
    return _vgg16_from_file(Path(encoder_weights), input_shape)


def _vgg16_from_file(path: Path, input_shape) -> keras.Model:
    fix = ("set fcn.encoder_weights to the path of a VGG16 no-top weights file (.h5 as Keras "
           "downloads it, or .weights.h5 from model.save_weights), or to none / imagenet")
    if not path.is_file():
        raise FcnlabError(f"fcn.encoder_weights: {path}: file not found; {fix}")
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    with warnings.catch_warnings(record=True) as caught:    # Keras warns per layer, then raises
        warnings.simplefilter("always")
        try:
            vgg.load_weights(path)
        except Exception as err:  # h5py, Keras and the OS each raise their own types here
            raise FcnlabError(
                f"fcn.encoder_weights: {path}: not VGG16 no-top weights ({err}); {fix}") from None
    for warning in caught:                                 # a load that worked keeps its warnings
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return vgg


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Make new sockets give up after `seconds` of silence (Keras' urlretrieve sets none)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# --- Sizes --------------------------------------------------------------------------------------


def head_parameter_count(head_width: int = 4096, n_classes: int = 2) -> int:
    """Parameters of the layers the seed adds after block5_pool (kernels + biases)."""
    w, n = head_width, n_classes
    return ((7 * 7 * 512 * w + w)             # conv6
            + (w * w + w)                     # fc7
            + (w * n + n)                     # score
            + (4 * 4 * n * 512 + 512)         # up2_pool5
            + (4 * 4 * 512 * 256 + 256)       # up2_fuse
            + (16 * 16 * 256 * n + n))        # up8_softmax


def encoder_parameter_count() -> int:
    """Parameters of VGG16 without its top (14,714,688)."""
    count, channels_in = 0, 3
    for filters in VGG16_BLOCKS:
        for channels_out in filters:
            count += 3 * 3 * channels_in * channels_out + channels_out
            channels_in = channels_out
    return count


def forward_flops(image_size, head_width: int = 4096, n_classes: int = 2,
                  vgg_preprocessing: bool = True) -> int:
    """Floating-point operations of one forward pass on one image, counted analytically.

    Counts 2 FLOPs (a multiply and an add) per multiply-accumulate of every convolution and
    transposed convolution, the usual convention; biases, ReLUs, pools, the two skip additions
    and the softmax are left out (together well under 1% of the total).
    A conv makes out_H*out_W*k*k*C_in*C_out multiply-accumulates; a transposed conv with
    stride s spreads each input pixel over a kxk window: in_H*in_W*k*k*C_in*C_out.
    """
    return (encoder_forward_flops(image_size, vgg_preprocessing)
            + head_forward_flops(image_size, head_width, n_classes))


def encoder_forward_flops(image_size, vgg_preprocessing: bool = True) -> int:
    """FLOPs of the preprocessing and VGG16 part of `forward_flops`."""
    h, w = _concrete_size(image_size)
    macs, channels_in = 0, 3
    if vgg_preprocessing:
        macs += h * w * 3 * 3                                     # vgg_preprocess, 1x1
    for filters in VGG16_BLOCKS:
        for channels_out in filters:
            macs += h * w * 3 * 3 * channels_in * channels_out     # 3x3, same padding
            channels_in = channels_out
        h, w = h // 2, w // 2                                      # 2x2 max-pool
    return 2 * macs


def head_forward_flops(image_size, head_width: int = 4096, n_classes: int = 2) -> int:
    """FLOPs of the layers the seed adds after block5_pool (conv6 .. up8_softmax)."""
    height, width = _concrete_size(image_size)
    h, w = height // 32, width // 32                                 # block5_pool's size
    macs = h * w * 7 * 7 * 512 * head_width                          # conv6
    macs += h * w * head_width * head_width                          # fc7
    macs += h * w * head_width * n_classes                           # score
    macs += h * w * 4 * 4 * n_classes * 512                          # up2_pool5, H/32 -> H/16
    macs += (2 * h) * (2 * w) * 4 * 4 * 512 * 256                    # up2_fuse, H/16 -> H/8
    macs += (4 * h) * (4 * w) * 16 * 16 * 256 * n_classes            # up8_softmax, H/8 -> H
    return 2 * macs


def _concrete_size(image_size) -> tuple[int, int]:
    height, width = _height_width(image_size)
    if height is None or width is None:
        raise ValueError("FLOP counts need a concrete image size")
    return height, width


def check_segmentation_model(model, path) -> None:
    """Refuse anything but a one-input, one-output model (N, H, W, 3) -> (N, H, W, 2)."""
    inputs, outputs = single_io_shape(model.inputs), single_io_shape(model.outputs)
    if (inputs is None or outputs is None or len(inputs) != 4 or len(outputs) != 4
            or inputs[-1] != 3 or outputs[-1] != 2):
        raise FcnlabError(
            f"{path}: not a 2-class segmentation model: it maps {describe_shapes(model.inputs)} to "
            f"{describe_shapes(model.outputs)}, but fcnlab needs (batch, H, W, 3) RGB images to "
            "(batch, H, W, 2) class probabilities; pass the FCN saved by train-fcn "
            "(models/fcn/fcn8s_vgg16.keras)")
