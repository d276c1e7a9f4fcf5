"""Export the FCN for other runtimes: a TensorFlow SavedModel, a TFLite file and an ONNX file.

    model (.keras) ──► export_saved_model ──► NAME_savedmodel/   tf.saved_model.load, TF Serving
       │                    └─► export_tflite (TFLiteConverter) ──► NAME.tflite   LiteRT
       └──────────────────► export_onnx (Keras' exporter) ──────► NAME.onnx    ONNX Runtime

Every artifact keeps the .keras model's contract: float32 raw RGB pixels 0..255 (N, H, W, 3) in,
class probabilities (N, H, W, 2) out, channel 1 the foreground. The model does its own
preprocessing (its first layer), so nothing else has to be ported. With `image_size=None` the
height and width stay free: each artifact takes any multiple of 32, as the .keras model does
(TFLite included: resize its input before allocating tensors). An int fixes them to that square
side, which some mobile runtimes prefer. The batch size is always free.

`predict_exported` runs an artifact with its own runtime (TensorFlow, LiteRT or ONNX Runtime;
no Keras), and `max_difference` compares it with the .keras model: they agree to float32
rounding, within PARITY_TOLERANCE (tests/test_export.py checks each format).

TFLite and ONNX need the `export` extra: pip install -e ".[export]".
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import atomic_path

FORMATS = ("savedmodel", "tflite", "onnx")
PARITY_TOLERANCE = 1e-4       # max |probability difference| between an artifact and the .keras model
SIDE_MULTIPLE_PX = 32         # FCN-8s pools five times: sides must divide by 2**5
CHECK_SIDE_PX = 128           # side of the check image when the export leaves the size free

# The Python packages each format needs beyond TensorFlow: {format: [(module, pip name)]}.
RUNTIME_PACKAGES = {"savedmodel": [],
                    "tflite": [("ai_edge_litert", "ai-edge-litert")],
                    "onnx": [("onnx", "onnx"), ("tf2onnx", "tf2onnx"), ("onnxruntime", "onnxruntime")]}


def export_model(model, out_dir, name: str, formats=FORMATS, image_size: int | None = None) -> dict:
    """Write `model` in each of `formats` into `out_dir`; return {format: path}, in that order.

    Files are named after `name` (NAME_savedmodel/, NAME.tflite, NAME.onnx) and each is written
    atomically. TFLite is converted from the SavedModel (a temporary one if it is not asked for).
    """
    formats = check_formats(formats)
    check_packages(formats)
    signature = input_signature(model, image_size)
    paths = {fmt: artifact_path(out_dir, name, fmt) for fmt in formats}
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = None
        if "savedmodel" in paths:
            saved_model = export_saved_model(model, paths["savedmodel"], signature)
        if "tflite" in paths:
            saved_model = saved_model or export_saved_model(model, Path(scratch) / "savedmodel", signature)
            export_tflite(saved_model, paths["tflite"])
        if "onnx" in paths:
            export_onnx(model, paths["onnx"], signature)
    return paths


def artifact_path(out_dir, name: str, fmt: str) -> Path:
    file_name = {"savedmodel": f"{name}_savedmodel", "tflite": f"{name}.tflite", "onnx": f"{name}.onnx"}
    return Path(out_dir) / file_name[fmt]


# --- Writers ------------------------------------------------------------------------------------


def input_signature(model, image_size: int | None = None) -> list:
    """The exported input: float32 (batch, H, W, 3) named "image"; H = W = `image_size`, or
    free (None) when it is None and the model's own input size is free."""
    import tensorflow as tf

    model_height, model_width = tuple(model.inputs[0].shape)[1:3]
    if image_size is not None:
        check_image_size(image_size)
        if {model_height, model_width} - {None, image_size}:
            raise ValueError(f"image size {image_size}: this model only takes "
                             f"{model_height} x {model_width} images")
        model_height = model_width = image_size
    return [tf.TensorSpec((None, model_height, model_width, 3), tf.float32, name="image")]


def export_saved_model(model, path, signature: list) -> Path:
    """A TensorFlow SavedModel folder: signature `serving_default`, image -> probabilities.

    Written with tf.saved_model.save rather than `model.export`, which stores every weight
    twice (keras-team/keras#23553: 2x the file size and the memory of whoever loads it). Here
    the module holds the very tf.Variables the traced call reads, so each is saved once.
    """
    import tensorflow as tf

    @tf.function(input_signature=signature)
    def serve(image):                                   # N x H x W x 3 -> N x H x W x 2
        return {"probabilities": model(image, training=False)}

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]   # the tf.Variables
    module.serve = serve
    with atomic_path(path) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": serve})
    return Path(path)


def export_tflite(saved_model, path) -> Path:
    """A TFLite flatbuffer converted from a SavedModel folder (float32, no quantisation)."""
    import tensorflow as tf

    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return Path(path)


def export_onnx(model, path, signature: list) -> Path:
    """An ONNX file written by Keras' own exporter (tf2onnx, patched by Keras for NumPy 2)."""
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # Keras' patch itself trips NumPy's FutureWarning about `np.object`; nothing to act on.
        warnings.filterwarnings("ignore", message=r"In the future `np\.object`", category=FutureWarning)
        model.export(str(tmp), format="onnx", input_signature=signature, verbose=False)
    return Path(path)


# --- Running the artifacts ----------------------------------------------------------------------


def predict_exported(path, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, H, W, 2) of `images` (N, H, W, 3, pixels 0..255) computed by an
    exported artifact with its own runtime: TensorFlow for a SavedModel folder, LiteRT for
    .tflite, ONNX Runtime for .onnx."""
    path, images = Path(path), np.ascontiguousarray(images, dtype=np.float32)
    if path.is_dir():
        return _predict_saved_model(path, images)
    if path.suffix == ".tflite":
        return _predict_tflite(path, images)
    if path.suffix == ".onnx":
        return _predict_onnx(path, images)
    raise ValueError(f"{path}: not an exported model (a SavedModel folder, .tflite or .onnx)")


def max_difference(model, path, images: np.ndarray) -> float:
    """Largest |probability difference| between an artifact and the Keras `model` on `images`."""
    expected = np.asarray(model(np.asarray(images, np.float32), training=False))
    return float(np.abs(predict_exported(path, images) - expected).max())


def check_images(model, image_size: int | None = None, count: int = 1, seed: int = 0) -> np.ndarray:
    """`count` seeded random RGB images (count, S, S, 3), float32 pixels 0..255, of a size the
    export takes: `image_size`, else the model's own fixed input size, else CHECK_SIDE_PX."""
    (_, height, width, _), = (spec.shape for spec in input_signature(model, image_size))
    height, width = height or CHECK_SIDE_PX, width or CHECK_SIDE_PX
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, height, width, 3)).astype(np.float32)


def _predict_saved_model(path: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (probabilities,) = serve(image=tf.constant(images)).values()
    return probabilities.numpy()


def _predict_tflite(path: Path, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (image,), (probabilities,) = interpreter.get_input_details(), interpreter.get_output_details()
    free = image["shape_signature"] == -1                  # the sizes the export left free
    if np.any((np.array(images.shape) != image["shape"]) & ~free):
        raise ValueError(f"{path} takes images of shape {_shape_text(image['shape_signature'])}, "
                         f"got {images.shape}")
    interpreter.resize_tensor_input(image["index"], images.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(image["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(probabilities["index"])


def _predict_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    (probabilities,) = session.run(None, {image.name: images})
    return probabilities


def _shape_text(signature) -> str:
    return "(" + ", ".join("any" if side == -1 else str(side) for side in signature) + ")"


# --- Checks -------------------------------------------------------------------------------------


def check_formats(formats) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(formats))                # unique, in the order given
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")
    return formats


def check_image_size(image_size: int) -> None:
    if int(image_size) != image_size or image_size < SIDE_MULTIPLE_PX or image_size % SIDE_MULTIPLE_PX:
        raise ValueError(f"image size {image_size}: must be a positive multiple of {SIDE_MULTIPLE_PX} "
                         "(FCN-8s halves it five times)")


def check_packages(formats) -> None:
    """Refuse, naming the packages and the pip command, when a format's runtime is missing."""
    import importlib.util

    missing = [pip for fmt in formats for module, pip in RUNTIME_PACKAGES[fmt]
               if importlib.util.find_spec(module) is None]
    if missing:
        raise FcnlabError(f"exporting {', '.join(formats)} needs the Python packages "
                          f"{', '.join(dict.fromkeys(missing))}; install them with "
                          f"pip install -e \".[export]\" (or pip install {' '.join(dict.fromkeys(missing))})")
