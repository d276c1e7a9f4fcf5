"""Two exact reformulations that make FCN training and inference faster on a CPU.

Neither changes the network or its maths; both compute the same numbers (up to float32
rounding) with less work. The saved `.keras` model never contains them: they are used by the
in-memory twins that `fcnlab.fcn_training` trains and predicts with.

`PaddingFreeConv2D` -- conv6 without the zero padding.
    The seed's conv6 is a 7x7 "same" convolution on block5_pool, which is tiny (7x7 at 224 px,
    4x4 at 128 px). Padded to 13x13 (10x10), most of each output's 7x7 window lies in the zero
    border: at 7x7 only 37 of the 49 row/column offsets of a window ever meet real pixels per
    axis, so 1,369 of the 2,401 position-tap products are non-zero (57 %); at 4x4, 256 of
    784 (33 %). oneDNN multiplies the zeros anyway. This layer runs one matrix product per
    kernel tap over just the output positions whose tap lands inside the map, and sums them:

        y[:, i, j] = bias + sum over taps (dy, dx) of  x[:, i+dy-3, j+dx-3] @ kernel[dy, dx]
                     (only the (i, j) where i+dy-3 and j+dx-3 are inside the map)

    Measured on 2 CPU cores (224 px, width 4096, batch 5): conv6 forward 0.34 s -> 0.16 s,
    forward + kernel gradient 0.70 s -> 0.32 s; outputs agree to 4e-6 (values ~2).

`FusedAdam` -- Keras' Adam update in one pass over memory.
    Keras 3 writes Adam's update as about ten separate element-wise ops, each a full pass over
    the variable. The seed's head has 119 million parameters (conv6 alone 103 M), so one
    optimiser step streamed ~5 GB and took 0.30 s on this machine. TensorFlow's own
    `ResourceApplyAdam` kernel does the identical formula (same bias correction, same epsilon
    placement) in one pass: 0.064 s. It is used on TensorFlow without a distribution strategy;
    elsewhere (and with amsgrad) the class is plain Keras Adam.
"""

from __future__ import annotations

import keras
from keras import ops

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
