"""The `fcnlab` command line: segment, decode and encode on real files with real (small) models.

Every expected value is computed here independently (padding by np.pad, resizing by Pillow,
prediction by the model itself, pixel scaling by hand) and compared with what the command wrote.
`fcnlab segment` predicts at the training scale recorded beside the model
(<model>.geometry.json), or at each image's own size with --native or without that record.
"""

import argparse
import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import fcnlab
from fcnlab.cli import main
from fcnlab.core.io import load_model, save_model
from fcnlab.seg.arrays import load_test_predictions
from fcnlab.seg.shards import load_prepared_split, save_prepared_segmentation
from fcnlab.seg.figures import PREDICTION_FILL
from fcnlab.seg.geometry import pad_to_multiple
from fcnlab.seg.predict import predict_foreground
from fcnlab.seg.sources import demo_segmentation
from fcnlab.seg.speedups import emulated_bfloat16_warning

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("fcnlab")


# --- Models and files made for the tests ---------------------------------------------------------




@pytest.fixture(scope="module")
def fcn(models):
    return load_model(models["fcn"])


def write_image(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def random_pixels(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def expected_fg_probs(model, rgb: np.ndarray) -> np.ndarray:
    """The model's foreground probabilities of `rgb` padded by reflection to multiples of 32."""
    height, width = rgb.shape[:2]
    pad = ((0, -height % 32), (0, -width % 32), (0, 0))
    padded = np.pad(rgb, pad, mode="reflect")
    return predict_foreground(model, padded[None])[0, :height, :width]


def model_with_geometry(models, folder: Path, resize: str, image_size: int) -> Path:
    """A copy of the test FCN with the geometry record train-fcn writes beside a model."""
    model = folder / "fcn.keras"
    shutil.copy(models["fcn"], model)
    geometry = {"resize": resize, "image_size": image_size, "patch_size": None}
    (folder / "fcn.geometry.json").write_text(json.dumps(geometry))
    return model


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def assert_mask_matches(mask_png: np.ndarray, fg_probs: np.ndarray, threshold: float) -> None:
    """Mask == (probability > threshold), allowing float rounding only right at the threshold."""
    expected = np.where(fg_probs > threshold, 255, 0)
    assert mask_png.shape == fg_probs.shape
    assert set(np.unique(mask_png)) <= {0, 255}
    differs = mask_png != expected
    assert np.all(np.abs(fg_probs[differs] - threshold) < 1e-5)
    assert differs.mean() < 0.001


def run_installed(*args: str, module: bool = False) -> subprocess.CompletedProcess:
    if not module:
        assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} missing: reinstall with pip install -e ."
    command = [sys.executable, "-m", "fcnlab.cli"] if module else [str(CONSOLE_SCRIPT)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(command + list(args), env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


# --- Padding -----------------------------------------------------------------------------------


def test_pad_to_multiple_mirrors_the_image_across_its_bottom_and_right_edges():
    image = random_pixels((50, 70, 3), seed=1)
    padded = pad_to_multiple(image)
    assert padded.shape == (64, 96, 3)
    assert np.array_equal(padded[:50, :70], image)
    assert np.array_equal(padded[50, :70], image[48])          # row 49 is the mirror axis
    assert np.array_equal(padded[:50, 70], image[:, 68])
    assert pad_to_multiple(np.zeros((64, 32))).shape == (64, 32)


# --- segment -----------------------------------------------------------------------------------


def test_segment_masks_equal_the_thresholded_prediction_of_the_padded_image(models, fcn, tmp_path, capsys):
    """Without a geometry record beside the model each image is predicted at its own size."""
    rgb = write_image(tmp_path / "odd.png", random_pixels((50, 70, 3), seed=2))
    gray_pixels = random_pixels((40, 45), seed=3)
    gray = write_image(tmp_path / "gray.png", gray_pixels)
    expected = {"odd": expected_fg_probs(fcn, read_png(rgb)),
                "gray": expected_fg_probs(fcn, np.stack([gray_pixels] * 3, axis=-1))}
    threshold = float(np.median(expected["odd"]))        # about half the pixels each side

    status = main(["segment", str(rgb), str(gray), "--model", str(models["fcn"]), "--precision", "float32",
                   "--out", str(tmp_path / "out"), "--threshold", repr(threshold)])

    assert status == 0
    for stem, fg_probs in expected.items():
        assert_mask_matches(read_png(tmp_path / "out" / f"{stem}_mask.png"), fg_probs, threshold)
    fractions = [np.mean(p > threshold) for p in expected.values()]
    captured = capsys.readouterr()
    assert "2 ok, 0 failed" in captured.out
    assert f"mean foreground fraction {np.mean(fractions):.3f}" in captured.out
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "fcn.geometry.json not found" in notes[0] and "--native" in notes[0]


def run_evaluate_iou(tmp_path: Path, data: Path, model: Path) -> Path:
    """Run evaluate-iou's `main` in this process (params.yaml's evaluate: section, threshold 0.5);
    return its predictions folder."""
    spec = importlib.util.spec_from_file_location("evaluate_iou", ROOT / "stages" / "evaluate_iou.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    reports = tmp_path / "reports"
    stage.main(argparse.Namespace(params=str(ROOT / "params.yaml"), data=str(data), model=str(model),
                                  predictions=str(tmp_path / "predictions"), per_image=str(reports / "per_image.csv"),
                                  threshold_curve=str(reports / "curve.csv"), metrics=str(reports / "metrics.json"),
                                  details=str(reports / "details.json")))
    assert json.loads((reports / "details.json").read_text())["threshold"] == 0.5
    return tmp_path / "predictions"


def test_segment_reproduces_evaluate_ious_masks_of_the_demo_test_images(models, tmp_path, capsys):
    """The demo's test images as PNG files, through `fcnlab segment` with the model and its
    geometry record, give the masks evaluate-iou's predictions give at threshold 0.5."""
    demo = demo_segmentation(2, 1, 3, image_size=64, seed=0)
    geometry = {"resize": "square", "image_size": 64}
    save_prepared_segmentation(tmp_path / "prepared", demo.splits(), geometry)
    model = model_with_geometry(models, tmp_path, **geometry)
    test = load_prepared_split(tmp_path / "prepared", "test")
    fg_probs = load_test_predictions(run_evaluate_iou(tmp_path, tmp_path / "prepared", model), test)
    pngs = [write_image(tmp_path / f"test_{i}.png", np.asarray(image)) for i, image in enumerate(test.images)]

    assert main(["segment", *map(str, pngs), "--model", str(model), "--out", str(tmp_path / "out")]) == 0

    assert "note:" not in capsys.readouterr().err              # the geometry record was found
    for png, probs in zip(pngs, fg_probs):
        mask = read_png(tmp_path / "out" / f"{png.stem}_mask.png")
        evaluated = np.where(probs > 0.5, 255, 0)
        assert mask.shape == evaluated.shape == (64, 64) and 0 < np.mean(mask == 255) < 1
        # evaluate-iou predicts the test images in one batch, segment one image at a time: the
        # probabilities may differ in their last bit, which can only matter right at 0.5.
        differs = mask != evaluated
        assert np.all(np.abs(probs[differs] - 0.5) < 1e-6), np.abs(probs[differs] - 0.5).max()
        assert differs.sum() <= 2


def resized_fg_probs(model, rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow-bilinear resize to height x width, predict padded, resize the probabilities back."""
    scaled = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    probs = expected_fg_probs(model, scaled)
    back = Image.fromarray(probs, mode="F").resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR)
    return np.clip(np.asarray(back), 0, 1)


@pytest.mark.parametrize("resize, scaled_size", [("square", (64, 64)), ("keep_aspect", (53, 64))])
def test_segment_predicts_at_the_training_scale_unless_native(models, fcn, tmp_path, capsys, resize, scaled_size):
    """A 96 x 80 image with a geometry of 64 px: resized to the training scale and back, or
    with --native at its own size; a 96 x 80 mask either way, and the two differ."""
    model = model_with_geometry(models, tmp_path, resize, 64)
    pixels = random_pixels((80, 96, 3), seed=13)
    image = write_image(tmp_path / "wide.png", pixels)

    exact = ["--model", str(model), "--precision", "float32"]
    assert main(["segment", str(image), *exact, "--out", str(tmp_path / "scaled")]) == 0
    assert main(["segment", str(image), *exact, "--out", str(tmp_path / "native"), "--native"]) == 0

    assert "note:" not in capsys.readouterr().err
    scaled = read_png(tmp_path / "scaled" / "wide_mask.png")
    native = read_png(tmp_path / "native" / "wide_mask.png")
    assert scaled.shape == native.shape == (80, 96)
    assert_mask_matches(scaled, resized_fg_probs(fcn, pixels, *scaled_size), 0.5)
    assert_mask_matches(native, expected_fg_probs(fcn, pixels), 0.5)
    assert np.mean(scaled != native) > 0.05


def test_segment_refuses_a_geometry_record_it_cannot_read(models, tmp_path, capsys):
    model = model_with_geometry(models, tmp_path, "square", 64)
    (tmp_path / "fcn.geometry.json").write_text('{"resize": "stretch", "image_size": 64}')
    image = write_image(tmp_path / "a.png", random_pixels((32, 32, 3), seed=14))

    status = main(["segment", str(image), "--model", str(model), "--out", str(tmp_path / "out")])

    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "fcn.geometry.json" in err[0]
    assert not (tmp_path / "out").exists()
    assert main(["segment", str(image), "--model", str(model), "--out", str(tmp_path / "out"), "--native"]) == 0


def test_segment_overlay_tints_the_foreground_and_leaves_the_background(models, tmp_path):
    pixels = random_pixels((33, 64, 3), seed=4)
    image = write_image(tmp_path / "scene.png", pixels)

    assert main(["segment", str(image), "--model", str(models["fcn"]), "--out", str(tmp_path),
                 "--threshold", "0.5"]) == 0

    mask = read_png(tmp_path / "scene_mask.png") == 255
    overlay = read_png(tmp_path / "scene_overlay.png")
    assert overlay.shape == pixels.shape and 0 < mask.mean() < 1
    assert np.array_equal(overlay[~mask], pixels[~mask])
    *blue, alpha = PREDICTION_FILL.colors[1]            # the report figures' prediction colour
    tinted = np.rint(pixels[mask] * (1 - alpha) + 255 * np.array(blue) * alpha)
    assert np.array_equal(overlay[mask], tinted)


@pytest.mark.integration
def test_segment_names_each_unreadable_file_once_and_still_does_the_others(models, tmp_path):
    good = [write_image(tmp_path / f"good{i}.png", random_pixels((32, 48, 3), seed=10 + i)) for i in range(2)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    missing = tmp_path / "missing.png"

    result = run_installed("segment", str(good[0]), str(broken), str(missing), str(good[1]),
                           "--model", str(models["fcn"]), "--out", str(tmp_path / "out"))

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert str(broken) in errors[0] and str(missing) in errors[1]
    for path in good:
        assert (tmp_path / "out" / f"{path.stem}_mask.png").is_file()
        assert (tmp_path / "out" / f"{path.stem}_overlay.png").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "good0_mask.png", "good0_overlay.png", "good1_mask.png", "good1_overlay.png"]
    assert "2 ok, 2 failed" in result.stdout


def test_segment_refuses_a_model_with_a_lambda_layer(tmp_path, capsys):
    image = keras.Input(shape=(None, None, 3))
    model = keras.Model(image, keras.layers.Lambda(lambda x: x[..., :2])(image))
    model.save(tmp_path / "lambda.keras")
    write_image(tmp_path / "a.png", random_pixels((32, 32, 3), seed=5))

    status = main(["segment", str(tmp_path / "a.png"), "--model", str(tmp_path / "lambda.keras"),
                   "--out", str(tmp_path / "out")])

    assert status == 2
    assert "Lambda" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_segment_refuses_a_model_that_is_not_a_two_class_segmenter(models, tmp_path, capsys):
    write_image(tmp_path / "a.png", random_pixels((32, 32, 3), seed=6))

    status = main(["segment", str(tmp_path / "a.png"), "--model", str(models["encoder"]),
                   "--out", str(tmp_path / "out")])

    assert status == 2
    err = capsys.readouterr().err
    assert "not a 2-class segmentation model" in err and "(batch, 28, 28, 1)" in err


def test_segment_pads_to_a_fixed_size_models_input_and_refuses_larger_images(tmp_path, capsys):
    image = keras.Input(shape=(64, 64, 3))
    keras.utils.set_random_seed(0)
    model = keras.Model(image, keras.layers.Conv2D(2, 1, activation="softmax")(image))
    save_model(model, tmp_path / "fixed.keras")
    small = write_image(tmp_path / "small.png", random_pixels((50, 40, 3), seed=11))
    large = write_image(tmp_path / "large.png", random_pixels((50, 70, 3), seed=12))

    status = main(["segment", str(small), str(large), "--model", str(tmp_path / "fixed.keras"),
                   "--out", str(tmp_path / "out")])

    assert status == 1
    padded = np.pad(read_png(small), ((0, 14), (0, 24), (0, 0)), mode="reflect")
    fg_probs = predict_foreground(model, padded[None])[0, :50, :40]
    assert_mask_matches(read_png(tmp_path / "out" / "small_mask.png"), fg_probs, 0.5)
    error = capsys.readouterr().err
    assert f"{large}: image is 50 x 70 px but the model was built for 64 x 64 px" in error


def test_segment_with_bfloat16_writes_masks_close_to_float32s(models, fcn, tmp_path):
    image = write_image(tmp_path / "scene.png", random_pixels((40, 64, 3), seed=5))
    assert main(["segment", str(image), "--model", str(models["fcn"]), "--out", str(tmp_path / "out"),
                 "--precision", "bfloat16"]) == 0
    mask = read_png(tmp_path / "out" / "scene_mask.png") == 255
    exact = expected_fg_probs(fcn, read_png(image)) > 0.5
    assert mask.shape == exact.shape and np.mean(mask == exact) > 0.95


def test_segment_refuses_an_unknown_precision_before_loading_anything(tmp_path, capsys):
    image = write_image(tmp_path / "scene.png", random_pixels((32, 32, 3), seed=6))
    status = main(["segment", str(image), "--model", str(tmp_path / "missing.keras"), "--out",
                   str(tmp_path / "out"), "--precision", "float16"])
    assert status == 2
    err = capsys.readouterr().err
    assert "argument --precision: invalid choice: 'float16' (choose from 'auto', 'float32', 'bfloat16')" in err
    assert "missing.keras" not in err and not (tmp_path / "out").exists()


def test_segment_sends_its_warnings_to_stderr_and_keeps_stdout_for_the_summary(models, tmp_path, capsys):
    """bfloat16 on a CPU that emulates it warns (on stderr); on any CPU stdout holds only the
    summary line, so `fcnlab segment ... > log` separates results from warnings."""
    image = write_image(tmp_path / "scene.png", random_pixels((32, 32, 3), seed=7))
    assert main(["segment", str(image), "--model", str(models["fcn"]), "--out", str(tmp_path / "out"),
                 "--precision", "bfloat16"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [line for line in captured.out.splitlines() if line.startswith("segment: 1 ok")]
    assert len(captured.out.splitlines()) == 1
    if emulated_bfloat16_warning("bfloat16", "segment", "--precision"):
        assert "warning: segment: --precision is bfloat16" in captured.err


def test_version_prints_the_package_version_and_exits_0(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fcnlab {fcnlab.__version__}"
    result = run_installed("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fcnlab {fcnlab.__version__}"


@pytest.mark.parametrize("command", ["decode", "encode", "segment"])
def test_an_output_that_cannot_be_written_exits_1_with_one_line(models, tmp_path, capsys, command):
    """Exit 1 is for work that failed (here: the output's folder is a file); 2 stays for usage."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    stroke = np.zeros((28, 28), np.uint8)
    stroke[6:22, 12:16] = 255                                  # a "1", white on black as MNIST
    digit = write_image(tmp_path / "digit.png", stroke)
    argv = {
        "decode": ["decode", "0", "0", "--decoder", str(models["decoder"]), "--out", str(blocker / "x.png")],
        "encode": ["encode", str(digit), "--encoder", str(models["encoder"]), "--csv", str(blocker / "z.csv")],
        "segment": ["segment", str(digit), "--model", str(models["fcn"]), "--native", "--out", str(blocker / "masks")],
    }[command]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(blocker) in err[0], err
    assert blocker.read_text() == "not a folder"


def test_segment_refuses_two_inputs_that_would_write_the_same_outputs(models, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    status = main(["segment", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.jpg"),
                   "--model", str(models["fcn"]), "--out", str(tmp_path / "out")])
    assert status == 2
    assert "share the name 'x'" in capsys.readouterr().err


# --- decode ------------------------------------------------------------------------------------


def decoder_pixels(decoder_path: Path, z1: float, z2: float) -> np.ndarray:
    decoded = load_model(decoder_path).predict(np.array([[[[z1, z2]]]], dtype=np.float32), verbose=0)
    return np.rint(np.clip(decoded[0, ..., 0], 0, 1) * 255).astype(np.uint8)        # 28 x 28


def test_decode_writes_the_decoder_output_scaled_to_0_255_for_a_negative_point(models, tmp_path):
    out = tmp_path / "fake.png"

    assert main(["decode", "-8", "0", "--decoder", str(models["decoder"]), "--out", str(out)]) == 0

    written = read_png(out)
    assert written.dtype == np.uint8 and written.shape == (28, 28)
    assert np.array_equal(written, decoder_pixels(models["decoder"], -8.0, 0.0))


def test_decode_scale_enlarges_by_nearest_neighbour_and_takes_numbers_after_double_dash(models, tmp_path):
    out = tmp_path / "big.png"

    assert main(["decode", "--decoder", str(models["decoder"]), "--out", str(out), "--scale", "3",
                 "--", "-1e-1", "-2.5"]) == 0

    expected = np.kron(decoder_pixels(models["decoder"], -0.1, -2.5), np.ones((3, 3), np.uint8))
    assert np.array_equal(read_png(out), expected)


# --- encode ------------------------------------------------------------------------------------


def test_encode_prints_the_encoder_latents_of_grayscale_and_resized_images(models, tmp_path, capsys):
    digit = random_pixels((28, 28), seed=7)
    big_rgb = random_pixels((56, 56, 3), seed=8)
    paths = [write_image(tmp_path / "digit.png", digit), write_image(tmp_path / "big.png", big_rgb)]
    big_gray = Image.fromarray(big_rgb).convert("L").resize((28, 28), Image.BILINEAR)
    inputs = np.stack([digit, np.asarray(big_gray)]).astype(np.float32)[..., None] / 255
    expected = load_model(models["encoder"]).predict(inputs, verbose=0).reshape(2, 2)

    assert main(["encode", *map(str, paths), "--encoder", str(models["encoder"])]) == 0

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    latents = np.array([[float(row["z1"]), float(row["z2"])] for row in rows], dtype=np.float32)
    assert np.array_equal(latents, expected)


def test_encode_writes_the_csv_file_and_names_an_unreadable_image(models, tmp_path, capsys):
    good = write_image(tmp_path / "one.png", random_pixels((28, 28), seed=9))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    table = tmp_path / "latents.csv"

    status = main(["encode", str(good), str(broken), "--encoder", str(models["encoder"]),
                   "--csv", str(table)])

    assert status == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0]
    rows = list(csv.DictReader(table.open()))
    assert [row["path"] for row in rows] == [str(good)]
    expected = load_model(models["encoder"]).predict(read_png(good)[None, ..., None] / 255, verbose=0)
    assert np.array_equal(np.float32([rows[0]["z1"], rows[0]["z2"]]), expected.reshape(2))


# --- Usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command, arguments", [
    ("segment", ["IMAGE", "--model", "--out", "--threshold", "--native", "--precision", "examples:"]),
    ("decode", ["Z1", "Z2", "--decoder", "--out", "--scale", "examples:"]),
    ("encode", ["IMAGE", "--encoder", "--csv", "examples:"]),
])
def test_help_of_each_command_exits_0_and_names_its_arguments(command, arguments, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for argument in arguments:
        assert argument in text


@pytest.mark.parametrize("argv", [
    [],
    ["segment", "a.png", "--out", "o"],                                     # no --model
    ["segment", "a.png", "--model", "m.keras", "--out", "o", "--threshold", "1.5"],
    ["segment", "a.png", "--model", "m.keras", "--out", "o", "--batch-size", "2"],   # gone: --native instead
    ["segment", "a.png", "--model", "m.keras", "--out", "o", "--native=yes"],           # a flag takes no value
    ["decode", "nan", "0", "--decoder", "d.keras", "--out", "x.png"],
    ["decode", "1", "2", "--decoder", "d.keras", "--out", "x.jpg"],
])
def test_usage_errors_exit_2(argv):
    assert main(argv) == 2


def test_python_dash_m_runs_the_same_command_line():
    result = run_installed("decode", "--help", module=True)
    assert result.returncode == 0 and "--decoder" in result.stdout


def test_a_missing_model_file_exits_2_with_one_line(tmp_path, capsys):
    status = main(["decode", "0", "0", "--decoder", str(tmp_path / "none.keras"), "--out",
                   str(tmp_path / "x.png")])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.keras" in err[0]


# --- A failure fcnlab does not foresee -------------------------------------------------------------


def a_bug(*args, **kwargs):
    raise RuntimeError("an unforeseen failure\nover two lines")


@pytest.mark.parametrize("debug", ["", "1"])
def test_an_unexpected_failure_is_one_line_naming_the_command_the_type_and_the_switch(
        models, tmp_path, capsys, monkeypatch, debug):
    import fcnlab.cae.digit_files

    monkeypatch.setattr(fcnlab.cae.digit_files, "decoded_digit_image", a_bug)     # stands for a bug
    monkeypatch.setenv("FCNLAB_DEBUG", debug)
    out = tmp_path / "digit.png"
    status = main(["decode", "0", "0", "--decoder", str(models["decoder"]), "--out", str(out)])
    assert status == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: fcnlab decode failed unexpectedly: RuntimeError: an unforeseen failure over "
                           "two lines; ")
    assert "FCNLAB_DEBUG=1" in last
    if debug:
        assert err.startswith("Traceback (most recent call last):") and "in a_bug" in err
    else:
        assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
