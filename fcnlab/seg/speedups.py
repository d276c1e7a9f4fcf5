"""Faster paths for FCN-8s: two exact reformulations, the in-memory twins that use them, bfloat16.

Neither changes the network or its maths; both compute the same numbers (up to float32
rounding) with less work. The saved `.keras` model never contains them: they are used by the
in-memory twins that `fcnlab.seg.training` trains and predicts with.

`PaddingFreeConv2D` -- conv6 without the zero padding.
    The seed's conv6 is a 7x7 "same" convolution on block5_pool, which is tiny (7x7 at 224 px,
    4x4 at 128 px). Padded to 13x13 (10x10), most of each output's 7x7 window lies in the zero
    border: at 7x7 only 37 of the 49 row/column offsets of a window ever meet real pixels per
    axis, so 1,369 of the 2,401 position-tap products are non-zero (57 %); at 4x4, 256 of
    784 (33 %). oneDNN multiplies the zeros anyway. This layer runs one matrix product per
    kernel tap over just the output positions whose tap lands inside the map, and sums them:

        y[:, i, j] = bias + sum over taps (dy, dx) of  x[:, i+dy-3, j+dx-3] @ kernel[dy, dx]
                     (only the (i, j) where i+dy-3 and j+dx-3 are inside the map)

    Outputs agree with Keras' Conv2D to float32 rounding (tests/test_seg_speedups.py); the
    speed-up is measured in bench/fcn_benchmark.py.

`FusedAdam` -- Keras' Adam update in one pass over memory.
    Keras 3 writes Adam's update as about ten separate element-wise ops, each a full pass over
    the variable. The seed's head has 119 million parameters (conv6 alone 103 M), so one
    optimiser step streams ~5 GB. TensorFlow's own
    `ResourceApplyAdam` kernel does the identical formula (same bias correction, same epsilon
    placement) in one pass. It is used on TensorFlow without a distribution strategy;
    elsewhere (and with amsgrad) the class is plain Keras Adam.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import ops

from fcnlab.core.params import PRECISIONS
from fcnlab.seg.model import HEAD_LAYER_NAMES

SKIP_FEATURES = ("block3_pool", "block4_pool", "block5_pool")

# Use the padding-free form only where it saves at least this fraction of the products: on
# large maps the padding is a thin border and one convolution beats many matrix products.
MIN_SKIPPED_FRACTION = 0.25


class PaddingFreeConv2D(keras.layers.Layer):
    """`conv` (a stride-1, "same"-padded Conv2D) computed without multiplying its zero padding.

    It holds `conv` itself, so it trains and reads the very same kernel and bias. It falls back
    to `conv` when the map's height or width is unknown when traced, or the padding is too
    small a share of the work to pay (see MIN_SKIPPED_FRACTION).
    """

    def __init__(self, conv: keras.layers.Conv2D, **kwargs):
        super().__init__(name=f"{conv.name}_padding_free", dtype=conv.dtype_policy, **kwargs)
        if conv.strides != (1, 1) or conv.padding != "same" or conv.dilation_rate != (1, 1) \
                or any(k % 2 == 0 for k in conv.kernel_size) or conv.data_format != "channels_last":
            raise ValueError(f"{conv.name}: PaddingFreeConv2D needs a stride-1, undilated, "
                             "channels-last 'same' convolution with odd kernel sides")
        self.conv = conv

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None or skipped_fraction(self.conv.kernel_size, height, width) \
                < MIN_SKIPPED_FRACTION:
            return self.conv(x)
        kernel_h, kernel_w = self.conv.kernel_size
        kernel = ops.cast(self.conv.kernel, self.compute_dtype)
        taps = ops.unstack(ops.reshape(kernel, (kernel_h * kernel_w,) + tuple(kernel.shape[2:])))
        total = None
        for dy in range(kernel_h):
            rows = _valid_outputs(dy, kernel_h, height)                       # output rows this tap reaches
            for dx in range(kernel_w):
                cols = _valid_outputs(dx, kernel_w, width)
                if rows is None or cols is None:
                    continue
                (r0, r1), (c0, c1) = rows, cols
                shift_y, shift_x = dy - kernel_h // 2, dx - kernel_w // 2
                window = x[:, r0 + shift_y:r1 + shift_y, c0 + shift_x:c1 + shift_x, :]   # N x r x c x C_in
                product = ops.tensordot(window, taps[dy * kernel_w + dx], axes=1)       # N x r x c x C_out
                product = ops.pad(product, [[0, 0], [r0, height - r1], [c0, width - c1], [0, 0]])
                total = product if total is None else total + product
        if self.conv.use_bias:
            total = total + ops.cast(self.conv.bias, self.compute_dtype)
        return self.conv.activation(total)


def _valid_outputs(tap: int, kernel: int, size: int):
    """The output index range [start, stop) whose `tap`-th kernel offset lands inside 0..size-1."""
    start, stop = max(0, kernel // 2 - tap), min(size, size + kernel // 2 - tap)
    return (start, stop) if start < stop else None


def skipped_fraction(kernel_size, height: int, width: int) -> float:
    """Share of a 'same' convolution's position-tap products that multiply zero padding."""
    kernel_h, kernel_w = kernel_size

    def valid(kernel, size):
        return sum(stop - start for start, stop in filter(None, (_valid_outputs(t, kernel, size)
                                                                 for t in range(kernel))))

    return 1.0 - valid(kernel_h, height) * valid(kernel_w, width) / (height * width * kernel_h * kernel_w)


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, with the per-variable update done by TensorFlow's fused ResourceApplyAdam."""

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        if (keras.backend.backend() != "tensorflow" or self.amsgrad or tf.distribute.has_strategy()
                or variable.dtype != tf.float32):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, variable.dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=ops.power(ops.cast(self.beta_1, variable.dtype), step),
            beta2_power=ops.power(ops.cast(self.beta_2, variable.dtype), step),
            lr=ops.cast(learning_rate, variable.dtype), beta1=ops.cast(self.beta_1, variable.dtype),
            beta2=ops.cast(self.beta_2, variable.dtype), epsilon=ops.cast(self.epsilon, variable.dtype),
            grad=ops.cast(gradient, variable.dtype))


# --- Twins: the model's own layers, wired for speed ------------------------------------------


def is_fcn8s(model) -> bool:
    """Whether `model` has fcnlab.seg.model's layer names (other segmentation models are run as they are)."""
    names = {layer.name for layer in model.layers}
    return set(HEAD_LAYER_NAMES) <= names and set(SKIP_FEATURES) <= names


def fast_twin(model):
    """`model` with conv6 computed padding-free: the same layers and weights, the same outputs."""
    import keras

    image = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    return keras.Model(image, _head(model, *_encoder(model, image), padding_free=True), name="fcn8s_vgg16_fast")


def _encoder(model, image):
    """`model`'s encoder layers called again, in order, on `image` (it is a plain chain)."""
    x, features = image, {}
    for layer in model.layers[1:]:
        x = features[layer.name] = layer(x)
        if layer.name == SKIP_FEATURES[-1]:
            break
    return [features[name] for name in SKIP_FEATURES]


def _head(model, pool3, pool4, pool5, padding_free: bool):
    """`model`'s head layers called again on the three encoder maps (see fcnlab.seg.model's diagram)."""
    layer = model.get_layer
    conv6 = PaddingFreeConv2D(layer("conv6")) if padding_free else layer("conv6")
    x = layer("fc7")(conv6(pool5))
    x = layer("up2_pool5")(layer("score")(x))
    x = layer("up2_fuse")(layer("fuse_pool4")([x, pool4]))
    return layer("up8_softmax")(layer("fuse_pool3")([x, pool3]))


def check_precision(precision: str) -> None:
    """Refuse anything but the two precisions computed in ("auto" must be resolved first)."""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"{precision!r} is not a precision to compute in; use float32 or bfloat16 "
                         "(resolve 'auto' with resolve_precision)")


NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")   # /proc/cpuinfo flags of CPUs that multiply bfloat16


def resolve_precision(precision: str, cpuinfo: str | None = None) -> str:
    """"auto" -> "bfloat16" where no GPU is used and the CPU multiplies bfloat16 natively
    (AVX512-BF16 or AMX: about twice float32's speed for FCN-8s), else "float32"; the other
    precisions are returned as they are. `cpuinfo` is /proc/cpuinfo's text (read when None)."""
    if precision != "auto":
        return precision
    if cpuinfo is None and _gpu_in_use():
        return "float32"
    flags = _cpu_flags(cpuinfo)
    return "bfloat16" if flags & set(NATIVE_BFLOAT16_FLAGS) else "float32"


def emulated_bfloat16_warning(precision: str, who: str, setting: str, cpuinfo: str | None = None) -> str | None:
    """A warning line (from `who`, naming `setting`) when `precision` is bfloat16 on a CPU that
    would emulate it, else None.

    Without AVX512-BF16 or AMX, oneDNN computes bfloat16 products in software, slower than
    float32. `cpuinfo` is /proc/cpuinfo's text, read from the machine when None; where it cannot
    be read (not Linux), or a GPU does the work, nothing is said.
    """
    if precision != "bfloat16" or (cpuinfo is None and _gpu_in_use()):
        return None
    flags = _cpu_flags(cpuinfo)
    if not flags or flags & set(NATIVE_BFLOAT16_FLAGS):
        return None
    return (f"warning: {who}: {setting} is bfloat16 but this CPU has neither AVX512-BF16 nor AMX, so bfloat16 is "
            f"emulated and slower than float32; set {setting} float32 (or auto)")


def _gpu_in_use() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _cpu_flags(cpuinfo: str | None) -> set[str]:
    """The flags of /proc/cpuinfo (or of `cpuinfo`, its text); empty where it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    return {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}


def with_dtype_policy(model, policy: str):
    """A copy of `model` (same architecture, copied weights) whose layers compute under `policy`."""
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = keras.dtype_policies.serialize(keras.DTypePolicy(policy))
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy
