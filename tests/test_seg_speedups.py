"""The exact speed-ups compute what they replace: padding-free conv6 and fused Adam."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcnlab.seg.speedups import FusedAdam, PaddingFreeConv2D, emulated_bfloat16_warning, skipped_fraction


def conv_pair(kernel, channels_in, filters, activation="relu", seed=0):
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv2D(filters, kernel, padding="same", activation=activation)
    conv.build((None, None, None, channels_in))
    conv.bias.assign(np.linspace(-0.5, 0.5, filters).astype(np.float32))
    return conv, PaddingFreeConv2D(conv)


def values_and_gradients(layer, conv, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.sin(y))
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, conv.kernel.value, conv.bias.value])]


@pytest.mark.parametrize("height, width, kernel", [(7, 7, 7), (4, 4, 7), (1, 1, 7), (2, 5, 7),
                                                   (3, 3, 3), (6, 2, 5)])
def test_padding_free_conv_equals_the_padded_convolution_and_its_gradients(height, width, kernel):
    conv, padding_free = conv_pair(kernel, channels_in=6, filters=5)
    x = np.random.default_rng(height * 10 + width).normal(size=(2, height, width, 6)).astype(np.float32)
    for ours, keras_conv in zip(values_and_gradients(padding_free, conv, x), values_and_gradients(conv, conv, x)):
        np.testing.assert_allclose(ours, keras_conv, rtol=1e-5, atol=1e-5)


def test_padding_free_conv_trains_the_wrapped_layers_variables():
    conv, padding_free = conv_pair(7, channels_in=3, filters=2)
    assert {id(v) for v in padding_free.trainable_weights} == {id(conv.kernel), id(conv.bias)}


def test_skipped_fraction_counts_the_products_that_meet_zero_padding():
    assert skipped_fraction((7, 7), 7, 7) == pytest.approx(1 - 37 * 37 / 2401)       # 224 px: 43 %
    assert skipped_fraction((7, 7), 4, 4) == pytest.approx(1 - 16 * 16 / 784)        # 128 px: 67 %
    assert skipped_fraction((1, 1), 9, 9) == 0
    assert skipped_fraction((3, 3), 100, 100) == pytest.approx(1 - (298 / 300) ** 2)


def test_padding_free_conv_refuses_a_convolution_it_cannot_replace():
    strided = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    with pytest.raises(ValueError, match="stride-1"):
        PaddingFreeConv2D(strided)
    with pytest.raises(ValueError, match="odd kernel"):
        PaddingFreeConv2D(keras.layers.Conv2D(4, 2, padding="same"))


def adam_trajectory(optimizer_class, steps=5):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(7,)).astype(np.float32)]
    variables = [keras.Variable(v) for v in start]
    optimizer = optimizer_class(learning_rate=0.01)
    for _ in range(steps):
        optimizer.apply_gradients(zip([rng.normal(size=v.shape).astype(np.float32) for v in start], variables))
    return [np.asarray(v) for v in variables]


def test_fused_adam_follows_keras_adam_step_for_step():
    fused, plain = adam_trajectory(FusedAdam), adam_trajectory(keras.optimizers.Adam)
    assert np.abs(fused[0] - adam_trajectory(FusedAdam, steps=1)[0]).max() > 1e-2     # it did move
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, atol=1e-6)        # a step moves ~1e-2


def fitted_dense_weights(optimizer_class, strategy):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(16, 5)).astype(np.float32)
    with strategy.scope():
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        model.compile(optimizer=optimizer_class(0.01), loss="mse")
    model.fit(x, x[:, :3] * 2, batch_size=4, epochs=2, verbose=0)
    return [np.asarray(w) for w in model.weights]


def test_fused_adam_under_a_distribution_strategy_is_keras_adam():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    fused = fitted_dense_weights(FusedAdam, strategy)
    for a, b in zip(fused, fitted_dense_weights(keras.optimizers.Adam, tf.distribute.get_strategy())):
        np.testing.assert_allclose(a, b, atol=1e-6)


AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx fma avx2\n"


def test_bfloat16_on_a_cpu_without_native_bfloat16_gets_a_warning_naming_the_setting():
    warning = emulated_bfloat16_warning("bfloat16", "train-fcn", "fcn.precision", cpuinfo=AVX2_ONLY)
    assert warning.startswith("warning: train-fcn: fcn.precision is bfloat16")
    assert "emulated" in warning and warning.endswith("set fcn.precision float32 (or auto)")


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_native_bfloat16_or_float32_or_unknown_flags_get_no_warning(flag):
    native = AVX2_ONLY.replace("avx2", f"avx2 avx512f {flag}")
    assert emulated_bfloat16_warning("bfloat16", "segment", "--precision", cpuinfo=native) is None
    assert emulated_bfloat16_warning("float32", "segment", "--precision", cpuinfo=AVX2_ONLY) is None
    assert emulated_bfloat16_warning("bfloat16", "segment", "--precision", cpuinfo="") is None
