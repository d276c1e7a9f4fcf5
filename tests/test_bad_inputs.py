"""Every stage refuses broken inputs the same way, and leaves nothing behind.

Each case starts from inputs a stage accepts, breaks exactly one thing (a file, an array, a
params key), runs the REAL stage script as DVC would, and expects:

- exit status 2, no traceback;
- exactly one line starting with `error:`, the last line of stderr, naming the offending file
  (or params key `section.key`) and saying what to do;
- none of the output paths passed to the script exists afterwards, and no file was written
  anywhere under the outputs folder (no half-written output, no temp file).

Stage scripts that import TensorFlow take ~4 s each to start, so the TensorFlow stages get
fewer cases; checks shared by several stages are exercised once per stage at least. The
property-based tests at the end feed random arrays and values straight to the loaders, checks
and params accessors: whatever comes in, the only exception that comes out is FcnlabError.
"""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from conftest import ROOT, run_script
from fcnlab.cae.data import check_prepared_digits, prepare_mnist_subset
from fcnlab.core.errors import FcnlabError
from fcnlab.core.params import Section
from fcnlab.seg.arrays import SegSplit, load_test_predictions, save_split_arrays
from fcnlab.seg.shards import load_prepared_split, save_prepared_segmentation
from fcnlab.seg.metrics import per_image_metrics, pixels, segmentation_metrics
from fcnlab.seg.sources import load_folder_source, load_npy_source

REPO_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

# A message "says what to do" when it contains one of these verbs (as a word).
FIX_VERBS = re.compile(r"(?i)\b(set|fix|save|rerun|run|use|lower|raise|replace|remove|add|write|choose|"
                       r"delete|retrain|convert|change|stack|build|keep|put|pass|downscale)\b")


# --- The workspace a case runs in -------------------------------------------------------------


@dataclass
class Workspace:
    """Inputs under `root/inputs`, outputs under `root/outputs`, params in `root/params.yaml`."""

    root: Path
    models: dict = field(default_factory=dict)   # prebuilt .keras files, see `model_files`

    def __post_init__(self):
        self.inputs, self.outputs = self.root / "inputs", self.root / "outputs"
        self.inputs.mkdir(parents=True)
        self.params = copy.deepcopy(REPO_PARAMS)
        self.paths: dict[str, Path] = {}

    def set(self, dotted_key: str, value) -> None:
        *sections, key = dotted_key.split(".")
        node = self.params
        for name in sections:
            node = node[name]
        node[key] = value

    def delete(self, dotted_key: str) -> None:
        *sections, key = dotted_key.split(".")
        node = self.params
        for name in sections:
            node = node[name]
        del node[key]

    def run(self, stage: "Stage"):
        params_file = self.root / "params.yaml"
        if not params_file.exists():
            params_file.write_text(yaml.safe_dump(self.params, sort_keys=False))
        args = ["--params", str(params_file)]
        for name in [*stage.inputs, *stage.outputs]:
            args += [f"--{name}", str(self.paths[name])]
        return run_script(stage.script, *args, timeout=300)


@dataclass(frozen=True)
class Stage:
    script: str
    inputs: tuple[str, ...]           # path arguments it reads (set by `build`)
    outputs: dict[str, str]           # path arguments it writes -> file name under outputs/
    build: Callable[[Workspace], None]
    needs_models: bool = False


# --- Valid inputs for each stage (tiny) -------------------------------------------------------


def mnist_arrays(n_train=30, n_test=12):
    rng = np.random.default_rng(1)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": np.arange(n_train) % 10,
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": np.arange(n_test) % 10}


def build_mnist_source(ws):
    path = ws.inputs / "mnist.npz"
    np.savez(path, **mnist_arrays())
    ws.set("mnist.source", str(path))


def one_hot(masks):
    return np.stack([1 - masks, masks], axis=-1).astype(np.uint8)    # N x H x W x 2


def quarter_masks(n, height=40, width=48):
    masks = np.zeros((n, height, width), np.uint8)
    masks[:, : height // 2, : width // 2] = 1
    return masks


def build_seg_npy(ws):
    folder = ws.inputs / "seg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "seg_train_imgs.npy", rng.integers(0, 256, (10, 40, 48, 3), dtype=np.uint8))
    np.save(folder / "seg_train_labels.npy", one_hot(quarter_masks(10)))
    np.save(folder / "seg_test_imgs.npy", rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8))
    np.save(folder / "seg_test_labels.npy", one_hot(quarter_masks(4)))
    ws.set("seg.source", "npy")
    ws.set("seg.path", str(folder))
    ws.set("seg.image_size", 32)


def use_folder_source(ws):
    """Switch prepare-seg to a valid folder source: 10 RGB PNGs of 40 x 48 px with 0/255 masks."""
    folder = ws.inputs / "folder"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(10):
        Image.new("RGB", (48, 40), (20 * i, 100, 200)).save(folder / "images" / f"{i}.png")
        Image.fromarray(quarter_masks(1)[0] * 255).save(folder / "masks" / f"{i}.png")
    ws.set("seg.source", "folder")
    ws.set("seg.path", str(folder))
    return folder


def prepared_mnist(n_train=20, n_test=9):
    rng = np.random.default_rng(2)
    digits = np.array([1, 5, 6])
    return {"train_x": rng.random((n_train, 28, 28, 1), dtype=np.float32),
            "train_y": digits[np.arange(n_train) % 3],
            "test_x": rng.random((n_test, 28, 28, 1), dtype=np.float32),
            "test_y": digits[np.arange(n_test) % 3]}


def write_arrays(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)


def build_prepared_mnist(ws):
    ws.paths["data"] = ws.inputs / "prepared_mnist"
    write_arrays(ws.paths["data"], prepared_mnist())
    ws.set("cae.epochs", 1)
    ws.set("cae.n_examples", 4)


def build_plot_latent(ws):
    build_prepared_mnist(ws)
    for name in ("encoder", "decoder"):
        ws.paths[name] = ws.inputs / f"{name}.keras"
        shutil.copy(ws.models[name], ws.paths[name])
    ws.params["latent"].update(knn_k=3, manifold_size=3, explorer_grid_size=2, scatter_points=5)


N_SEG, SEG_SIZE = 4, 32                       # images per prepared split, each SEG_SIZE x SEG_SIZE
SEG_PIXELS = N_SEG * SEG_SIZE * SEG_SIZE       # rows of each split's ragged _images / _masks file
SHARD = "prepared_seg/{}-00000-of-00001_{}.npy"  # each small split is one shard


def prepared_seg(n=N_SEG, size=SEG_SIZE) -> dict[str, SegSplit]:
    rng = np.random.default_rng(3)
    return {split: SegSplit(list(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)),
                            list(quarter_masks(n, size, size)))
            for split in ("train", "val", "test")}


def build_prepared_seg(ws):
    ws.paths["data"] = ws.inputs / "prepared_seg"
    save_prepared_segmentation(ws.paths["data"], prepared_seg(), {"resize": "square", "image_size": SEG_SIZE})
    ws.params["fcn"].update(head_width=8, epochs=1, batch_size=2, patch_size=None, augment=False,
                            keep_best=False, lr_schedule="constant", loss="crossentropy")


def build_evaluate(ws):
    build_prepared_seg(ws)
    ws.paths["model"] = ws.inputs / "fcn8s_vgg16.keras"
    shutil.copy(ws.models["segmenter"], ws.paths["model"])


def build_render(ws):
    build_prepared_seg(ws)
    ws.paths["predictions"] = ws.inputs / "predictions"
    ws.paths["predictions"].mkdir()
    probs = np.random.default_rng(4).random((N_SEG, SEG_SIZE, SEG_SIZE), dtype=np.float32)
    save_split_arrays(ws.paths["predictions"], "test", fg_probs=list(probs))
    ws.params["overlays"].update(examples=[0, 1], n_best_worst=2)


STAGES = {
    "prepare-mnist-subset": Stage("prepare_mnist_subset.py", (),
                                  {"out": "mnist", "summary": "summary.json"}, build_mnist_source),
    "prepare-seg": Stage("prepare_seg.py", (), {"out": "seg", "summary": "summary.json"}, build_seg_npy),
    "train-cae": Stage("train_cae.py", ("data",),
                       {"encoder": "encoder.keras", "decoder": "decoder.keras", "live": "live",
                        "metrics": "metrics.json", "details": "details.json", "figure": "reconstructions.png"},
                       build_prepared_mnist),
    "plot-latent": Stage("plot_latent.py", ("data", "encoder", "decoder"),
                         {"scatter_csv": "latent_test.csv", "scatter_png": "latent_scatter.png",
                          "decoded_png": "decoded_points.png", "manifold_png": "manifold.png",
                          "explorer_html": "explorer.html", "metrics": "metrics.json", "details": "details.json"},
                         build_plot_latent, needs_models=True),
    "train-fcn": Stage("train_fcn.py", ("data",),
                       {"model": "fcn8s_vgg16.keras", "geometry": "fcn8s_vgg16.geometry.json", "live": "live",
                        "epochs": "epochs.csv", "metrics": "metrics.json", "details": "details.json"},
                       build_prepared_seg),
    "evaluate-iou": Stage("evaluate_iou.py", ("data", "model"),
                          {"predictions": "fcn_test", "per_image": "per_image.csv",
                           "threshold_curve": "iou_vs_threshold.csv", "metrics": "metrics.json",
                           "details": "details.json"},
                          build_evaluate, needs_models=True),
    "render-overlays": Stage("render_overlays.py", ("data", "predictions"), {"figures": "render_overlays"},
                             build_render),
}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Small real .keras files: the CAE encoder and decoder (untrained), a 1x1-conv two-class
    segmenter standing in for the FCN, and a model with a Lambda layer (arbitrary code)."""
    import keras

    from fcnlab.cae.model import cae_decoder, cae_encoder
    from fcnlab.core.io import save_model

    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    save_model(cae_encoder(), folder / "encoder.keras")
    save_model(cae_decoder(), folder / "decoder.keras")
    image = keras.Input((None, None, 3))
    save_model(keras.Model(image, keras.layers.Conv2D(2, 1, activation="softmax")(image)),
               folder / "segmenter.keras")
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(folder / "lambda.keras")
    return {path.stem: path for path in folder.iterdir()}


# --- Ways to break an input -------------------------------------------------------------------


def params(**dotted):
    """Set params keys; write `seg__demo__n_train` for `seg.demo.n_train`."""
    def break_it(ws):
        for key, value in dotted.items():
            ws.set(key.replace("__", "."), value)
    return break_it


def delete_param(dotted_key):
    return lambda ws: ws.delete(dotted_key)


def both(*steps):
    def break_it(ws):
        for step in steps:
            step(ws)
    return break_it


def raw_params_file(text):
    return lambda ws: (ws.root / "params.yaml").write_text(text)


def write_npz(**overrides):
    """Rewrite the MNIST source .npz with some arrays replaced (None: left out)."""
    def break_it(ws):
        arrays = {**mnist_arrays(), **overrides}
        np.savez(ws.inputs / "mnist.npz", **{k: v for k, v in arrays.items() if v is not None})
    return break_it


def npz_with_objects(ws):
    np.savez(ws.inputs / "mnist.npz", **{**mnist_arrays(), "y_train": np.array([{"a": 1}] * 30)})


def truncate(relative_path):
    def break_it(ws):
        path = ws.inputs / relative_path
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return break_it


def flip_byte_in_the_middle(relative_path):
    def break_it(ws):
        path = ws.inputs / relative_path
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    return break_it


def write_bytes(relative_path, data: bytes):
    return lambda ws: (ws.inputs / relative_path).write_bytes(data)


def remove(relative_path):
    def break_it(ws):
        path = ws.inputs / relative_path
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return break_it


def save_npy(relative_path, array):
    return lambda ws: np.save(ws.inputs / relative_path, array)


def save_pickled(relative_path):
    return lambda ws: np.save(ws.inputs / relative_path, np.array([{"x": 1}] * 4), allow_pickle=True)


def npy_header_claiming(relative_path, shape):
    """A .npy file whose header claims `shape` (uint8) but that holds only a few bytes."""
    def break_it(ws):
        with open(ws.inputs / relative_path, "wb") as file:
            np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False, "shape": shape})
            file.write(b"\0" * 16)
    return break_it


def save_image(relative_path, array):
    return lambda ws: Image.fromarray(array).save(ws.inputs / relative_path)


def truncated_png(relative_path):
    def break_it(ws):
        path = ws.inputs / relative_path
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return break_it


def use_model(relative_path, name):
    return lambda ws: shutil.copy(ws.models[name], ws.inputs / relative_path)


def with_nan(shape, dtype=np.float64, value=np.nan, fill=0.5):
    array = np.full(shape, fill, dtype)
    array.flat[7] = value
    return array


_IMGS, _LABELS = "seg/seg_train_imgs.npy", "seg/seg_train_labels.npy"
_LABELS_10 = one_hot(quarter_masks(10))
_MASKS_2 = quarter_masks(N_SEG, SEG_SIZE, SEG_SIZE).reshape(-1) * 2      # ragged layout: P pixels
_PROBS_NAN = with_nan((SEG_PIXELS,), np.float32)
_PROBS_ABOVE_1 = np.full(SEG_PIXELS, 1.5, np.float32)


# --- The corpus -------------------------------------------------------------------------------
# (stage, id, break_it, what the error line must name)

CASES = [
    # prepare-mnist-subset: the source .npz
    ("prepare-mnist-subset", "npz-truncated", truncate("mnist.npz"), "mnist.npz"),
    ("prepare-mnist-subset", "npz-garbage-bytes", write_bytes("mnist.npz", b"PK\x03\x04 not a zip"), "mnist.npz"),
    ("prepare-mnist-subset", "npz-zero-bytes", write_bytes("mnist.npz", b""), "mnist.npz"),
    ("prepare-mnist-subset", "npz-corrupt-member", flip_byte_in_the_middle("mnist.npz"), "mnist.npz"),
    ("prepare-mnist-subset", "npz-object-arrays-need-pickle", npz_with_objects, "mnist.npz"),
    ("prepare-mnist-subset", "npz-array-missing", write_npz(y_test=None), "mnist.npz"),
    ("prepare-mnist-subset", "pixels-nan", write_npz(x_train=with_nan((30, 28, 28))), "mnist.npz"),
    ("prepare-mnist-subset", "pixels-inf", write_npz(x_test=with_nan((12, 28, 28), value=np.inf)), "mnist.npz"),
    ("prepare-mnist-subset", "pixels-above-255", write_npz(x_train=np.full((30, 28, 28), 300.0)), "mnist.npz"),
    ("prepare-mnist-subset", "images-rank-2", write_npz(x_train=np.zeros((30, 784), np.uint8)), "mnist.npz"),
    ("prepare-mnist-subset", "images-32px", write_npz(x_test=np.zeros((12, 32, 32), np.uint8)), "mnist.npz"),
    ("prepare-mnist-subset", "images-none",
     write_npz(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, int)), "mnist.npz"),
    ("prepare-mnist-subset", "labels-float", write_npz(y_train=np.arange(30) % 10 * 1.0), "mnist.npz"),
    ("prepare-mnist-subset", "labels-count-mismatch", write_npz(y_test=np.arange(11) % 10), "mnist.npz"),
    ("prepare-mnist-subset", "labels-not-digits", write_npz(y_train=np.arange(30) + 5), "mnist.npz"),
    ("prepare-mnist-subset", "digits-absent", write_npz(y_train=np.arange(30) % 5), "mnist.npz"),
    ("prepare-mnist-subset", "source-file-missing", params(mnist__source="no/such/mnist.npz"), "no/such/mnist.npz"),
    # prepare-mnist-subset: params
    ("prepare-mnist-subset", "digits-empty", params(mnist__digits=[]), "mnist.digits"),
    ("prepare-mnist-subset", "digits-12", params(mnist__digits=[1, 12]), "mnist.digits"),
    ("prepare-mnist-subset", "digits-string", params(mnist__digits="156"), "mnist.digits"),
    ("prepare-mnist-subset", "test-fraction-0", params(mnist__test_fraction=0), "mnist.test_fraction"),
    ("prepare-mnist-subset", "seed-negative", params(mnist__seed=-1), "mnist.seed"),
    ("prepare-mnist-subset", "source-42", params(mnist__source=42), "mnist.source"),
    ("prepare-mnist-subset", "section-missing", raw_params_file("cae: {epochs: 1}\n"), "'mnist:'"),
    ("prepare-mnist-subset", "params-not-yaml", raw_params_file("mnist: [unclosed\n  digits: {\n"), "params.yaml"),

    # prepare-seg: the seed's .npy files
    ("prepare-seg", "npy-truncated", truncate(_IMGS), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-garbage-bytes", write_bytes(_IMGS, b"\x93NUMPY garbage"), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-zero-bytes", write_bytes(_LABELS, b""), "seg_train_labels.npy"),
    ("prepare-seg", "npy-object-array-needs-pickle", save_pickled(_IMGS), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-pixels-nan", save_npy(_IMGS, with_nan((10, 40, 48, 3))), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-pixels-inf", save_npy(_IMGS, with_nan((10, 40, 48, 3), value=-np.inf)), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-pixels-above-255", save_npy(_IMGS, np.full((10, 40, 48, 3), 256, np.int16)),
     "seg_train_imgs.npy"),
    ("prepare-seg", "npy-images-rank-3", save_npy(_IMGS, np.zeros((10, 40, 48), np.uint8)), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-images-4-channels", save_npy(_IMGS, np.zeros((10, 40, 48, 4), np.uint8)),
     "seg_train_imgs.npy"),
    ("prepare-seg", "npy-images-zero-height", save_npy(_IMGS, np.zeros((10, 0, 48, 3), np.uint8)),
     "seg_train_imgs.npy"),
    ("prepare-seg", "npy-images-complex", save_npy(_IMGS, np.zeros((10, 40, 48, 3), np.complex64)),
     "seg_train_imgs.npy"),
    ("prepare-seg", "npy-images-text", save_npy(_IMGS, np.full((10, 40, 48, 3), "a")), "seg_train_imgs.npy"),
    ("prepare-seg", "npy-labels-valued-2", save_npy(_LABELS, _LABELS_10 * 2), "seg_train_labels.npy"),
    ("prepare-seg", "npy-labels-not-one-hot", save_npy(_LABELS, np.ones_like(_LABELS_10)), "seg_train_labels.npy"),
    ("prepare-seg", "npy-labels-1-channel", save_npy(_LABELS, _LABELS_10[..., 1:]), "seg_train_labels.npy"),
    ("prepare-seg", "npy-count-mismatch", save_npy(_LABELS, _LABELS_10[:9]), "seg_train_labels.npy"),
    ("prepare-seg", "npy-labels-missing", remove(_LABELS), "seg_train_labels.npy"),
    ("prepare-seg", "npy-bad-test-labels", save_npy("seg/seg_test_labels.npy", one_hot(quarter_masks(4)) * 3),
     "seg_test_labels.npy"),
    ("prepare-seg", "npy-header-claims-huge-shape", npy_header_claiming(_IMGS, (10 ** 6, 4000, 4000, 3)),
     "seg_train_imgs.npy"),
    ("prepare-seg", "npy-header-claims-impossible-shape", npy_header_claiming(_IMGS, (10 ** 30, 10 ** 30, 4, 3)),
     "seg_train_imgs.npy"),
    ("prepare-seg", "npy-labels-header-claims-huge-shape", npy_header_claiming(_LABELS, (10 ** 9, 4000, 4000, 2)),
     "seg_train_labels.npy"),
    # prepare-seg: a folder of images and masks
    ("prepare-seg", "folder-missing", both(use_folder_source, params(seg__path="no/such/folder")), "no/such/folder"),
    ("prepare-seg", "folder-without-masks", both(use_folder_source, remove("folder/masks")), "masks"),
    ("prepare-seg", "folder-mask-stray-values",
     both(use_folder_source, save_image("folder/masks/3.png", quarter_masks(1)[0] * 128)), "3.png"),
    ("prepare-seg", "folder-mismatched-stems", both(use_folder_source, remove("folder/masks/7.png")), "7.png"),
    ("prepare-seg", "folder-zero-byte-image",
     both(use_folder_source, write_bytes("folder/images/2.png", b"")), "2.png"),
    ("prepare-seg", "folder-unreadable-image",
     both(use_folder_source, write_bytes("folder/images/2.png", b"\x89PNG\r\n not an image")), "2.png"),
    ("prepare-seg", "folder-truncated-image", both(use_folder_source, truncated_png("folder/images/5.png")), "5.png"),
    ("prepare-seg", "folder-mask-of-another-size",
     both(use_folder_source, save_image("folder/masks/1.png", np.zeros((10, 10), np.uint8))), "1.png"),
    ("prepare-seg", "folder-foreground-value-2", both(use_folder_source, params(seg__foreground_value=2)),
     "seg.foreground_value"),
    # prepare-seg: params
    ("prepare-seg", "image-size-48", params(seg__image_size=48), "seg.image_size"),
    ("prepare-seg", "image-size-16", params(seg__image_size=16), "seg.image_size"),
    ("prepare-seg", "image-size-string", params(seg__image_size="128px"), "seg.image_size"),
    ("prepare-seg", "source-unknown", params(seg__source="s3"), "seg.source"),
    ("prepare-seg", "resize-unknown", params(seg__resize="stretch"), "seg.resize"),
    ("prepare-seg", "demo-image-size-48", params(seg__source="demo", seg__demo__image_size=48),
     "seg.demo.image_size"),
    ("prepare-seg", "path-not-set", params(seg__path=None), "seg.path"),
    ("prepare-seg", "npy-folder-missing", params(seg__path="no/such/folder"), "no/such/folder"),
    ("prepare-seg", "val-fraction-0", params(seg__val_fraction=0), "seg.val_fraction"),
    ("prepare-seg", "demo-n-train-0", params(seg__source="demo", seg__demo__n_train=0), "seg.demo.n_train"),
    ("prepare-seg", "demo-n-test-0", params(seg__source="demo", seg__demo__n_test=0), "seg.demo.n_test"),
    ("prepare-seg", "demo-section-missing", both(params(seg__source="demo"), delete_param("seg.demo")), "seg.demo"),
    ("prepare-seg", "shard-megapixels-0", params(seg__shard_megapixels=0), "seg.shard_megapixels"),
    ("prepare-seg", "shard-megapixels-missing", delete_param("seg.shard_megapixels"), "seg.shard_megapixels"),
    ("prepare-seg", "shard-megapixels-string", params(seg__shard_megapixels="16M"), "seg.shard_megapixels"),

    # train-cae (TensorFlow: ~4 s a case)
    ("train-cae", "data-folder-missing", remove("prepared_mnist"), "train_x.npy"),
    ("train-cae", "train-x-float64", save_npy("prepared_mnist/train_x.npy", np.zeros((20, 28, 28, 1))),
     "train_x.npy"),
    ("train-cae", "train-x-without-channel",
     save_npy("prepared_mnist/train_x.npy", np.zeros((20, 28, 28), np.float32)), "train_x.npy"),
    ("train-cae", "test-x-nan", save_npy("prepared_mnist/test_x.npy", with_nan((9, 28, 28, 1), np.float32)),
     "test_x.npy"),
    ("train-cae", "epochs-0", params(cae__epochs=0), "cae.epochs"),
    ("train-cae", "learning-rate-negative", params(cae__learning_rate=-1), "cae.learning_rate"),
    ("train-cae", "batch-size-string", params(cae__batch_size="x"), "cae.batch_size"),
    ("train-cae", "learning-rate-so-high-training-diverges", params(cae__learning_rate=1e12), "cae.learning_rate"),

    # plot-latent (TensorFlow only once a model is loaded)
    ("plot-latent", "encoder-missing", remove("encoder.keras"), "encoder.keras"),
    ("plot-latent", "decoder-garbage-bytes", write_bytes("decoder.keras", b"not a zip file at all"), "decoder.keras"),
    ("plot-latent", "encoder-with-lambda-layer", use_model("encoder.keras", "lambda"), "encoder.keras"),
    ("plot-latent", "decoder-given-as-encoder", use_model("encoder.keras", "decoder"), "encoder.keras"),
    ("plot-latent", "train-y-count-mismatch", save_npy("prepared_mnist/train_y.npy", np.ones(19, int)),
     "train_y.npy"),
    ("plot-latent", "test-x-wrong-shape",
     save_npy("prepared_mnist/test_x.npy", np.zeros((9, 32, 32, 1), np.float32)), "test_x.npy"),
    ("plot-latent", "test-y-pickled", save_pickled("prepared_mnist/test_y.npy"), "test_y.npy"),
    ("plot-latent", "knn-k-above-train-count", params(latent__knn_k=21), "latent.knn_k"),
    ("plot-latent", "decode-points-triples", params(latent__decode_points=[[1, 2, 3]]), "latent.decode_points"),
    ("plot-latent", "decode-points-empty", params(latent__decode_points=[]), "latent.decode_points"),
    ("plot-latent", "decode-points-nan", params(latent__decode_points=[[float("nan"), 0]]),
     "latent.decode_points"),
    ("plot-latent", "decode-points-word", params(latent__decode_points="median"), "latent.decode_points"),
    ("plot-latent", "manifold-size-1", params(latent__manifold_size=1), "latent.manifold_size"),

    # train-fcn (TensorFlow: ~4 s a case)
    ("train-fcn", "data-folder-missing", remove("prepared_seg"), "train-00000-of-00001_shapes.npy"),
    ("train-fcn", "masks-valued-2", save_npy(SHARD.format("train", "masks"), _MASKS_2), "train-00000-of-00001_masks"),
    ("train-fcn", "images-float32",
     save_npy(SHARD.format("val", "images"), np.zeros((SEG_PIXELS, 3), np.float32)), "val-00000-of-00001_images"),
    ("train-fcn", "images-without-channel",
     save_npy(SHARD.format("train", "images"), np.zeros(SEG_PIXELS, np.uint8)), "train-00000-of-00001_images"),
    ("train-fcn", "images-truncated", truncate(SHARD.format("train", "images")), "train-00000-of-00001_images"),
    ("train-fcn", "images-fortran-order",
     save_npy(SHARD.format("train", "images"), np.asfortranarray(np.zeros((SEG_PIXELS, 3), np.uint8))),
     "train-00000-of-00001_images"),
    ("train-fcn", "shapes-of-other-images",
     save_npy(SHARD.format("train", "shapes"), np.array([[32, 32]] * 3, np.int64)), "train-00000-of-00001_images"),
    ("train-fcn", "shapes-three-columns",
     save_npy(SHARD.format("val", "shapes"), np.full((4, 3), 32, np.int64)), "val-00000-of-00001_shapes"),
    ("train-fcn", "shard-missing", remove(SHARD.format("train", "shapes")), "train-00000-of-00001_shapes.npy"),
    ("train-fcn", "stale-shard-of-another-run",
     save_npy("prepared_seg/train-00001-of-00002_shapes.npy", np.array([[32, 32]], np.int64)),
     "train-00001-of-00002_shapes.npy"),
    ("train-fcn", "old-unsharded-layout",
     both(remove(SHARD.format("train", "shapes")),
          save_npy("prepared_seg/train_shapes.npy", np.array([[32, 32]] * 4, np.int64))), "train_shapes.npy"),
    ("train-fcn", "geometry-not-a-record", write_bytes("prepared_seg/geometry.json", b'{"resize": "stretch"}'),
     "geometry.json"),
    ("train-fcn", "head-width-0", params(fcn__head_width=0), "fcn.head_width"),
    ("train-fcn", "loss-unknown", params(fcn__loss="focal"), "fcn.loss"),
    ("train-fcn", "patch-size-48", params(fcn__patch_size=48), "fcn.patch_size"),
    ("train-fcn", "patience-0", params(fcn__patience=0), "fcn.patience"),
    ("train-fcn", "encoder-weights-file-missing", params(fcn__encoder_weights="no/such/vgg16.h5"),
     "fcn.encoder_weights"),
    ("train-fcn", "freeze-encoder-yes-string", params(fcn__freeze_encoder="yes"), "fcn.freeze_encoder"),
    ("train-fcn", "precision-half", params(fcn__precision="half"), "fcn.precision"),

    # evaluate-iou (TensorFlow: ~4 s a case)
    ("evaluate-iou", "model-missing", remove("fcn8s_vgg16.keras"), "fcn8s_vgg16.keras"),
    ("evaluate-iou", "model-garbage-bytes", write_bytes("fcn8s_vgg16.keras", b"\x00" * 64), "fcn8s_vgg16.keras"),
    ("evaluate-iou", "threshold-1.5", params(evaluate__threshold=1.5), "evaluate.threshold"),
    ("evaluate-iou", "precision-float16", params(evaluate__precision="float16"), "evaluate.precision"),
    ("evaluate-iou", "test-masks-valued-2", save_npy(SHARD.format("test", "masks"), _MASKS_2),
     "test-00000-of-00001_masks"),
    ("evaluate-iou", "test-shapes-missing", remove(SHARD.format("test", "shapes")), "test-00000-of-00001_shapes"),
    ("evaluate-iou", "baseline-margin-negative", params(evaluate__baseline_margin=-0.1), "evaluate.baseline_margin"),
    ("evaluate-iou", "model-of-the-wrong-kind", use_model("fcn8s_vgg16.keras", "encoder"), "fcn8s_vgg16.keras"),

    # render-overlays
    ("render-overlays", "predictions-missing", remove("predictions"), "test_shapes.npy"),
    ("render-overlays", "predictions-probs-missing", remove("predictions/test_fg_probs.npy"), "test_fg_probs.npy"),
    ("render-overlays", "predictions-of-other-data",
     save_npy("predictions/test_shapes.npy", np.array([[32, 32]] * 5, np.int64)), "test_shapes.npy"),
    ("render-overlays", "predictions-of-other-sizes",
     save_npy("predictions/test_shapes.npy", np.array([[32, 32]] * 3 + [[16, 64]], np.int64)), "test_shapes.npy"),
    ("render-overlays", "predictions-fewer-pixels",
     save_npy("predictions/test_fg_probs.npy", np.zeros(SEG_PIXELS - 1, np.float32)), "test_fg_probs.npy"),
    ("render-overlays", "predictions-nan", save_npy("predictions/test_fg_probs.npy", _PROBS_NAN), "test_fg_probs.npy"),
    ("render-overlays", "predictions-above-1",
     save_npy("predictions/test_fg_probs.npy", _PROBS_ABOVE_1), "test_fg_probs.npy"),
    ("render-overlays", "predictions-integers",
     save_npy("predictions/test_fg_probs.npy", np.zeros(SEG_PIXELS, np.uint8)), "test_fg_probs.npy"),
    ("render-overlays", "predictions-header-claims-huge-shape",
     npy_header_claiming("predictions/test_fg_probs.npy", (10 ** 12,)), "test_fg_probs.npy"),
    ("render-overlays", "predictions-truncated", truncate("predictions/test_fg_probs.npy"), "test_fg_probs.npy"),
    ("render-overlays", "predictions-pickled", save_pickled("predictions/test_fg_probs.npy"), "test_fg_probs.npy"),
    ("render-overlays", "test-masks-valued-2", save_npy(SHARD.format("test", "masks"), _MASKS_2),
     "test-00000-of-00001_masks"),
    ("render-overlays", "examples-index-out-of-range", params(overlays__examples=[0, 4]), "overlays.examples"),
    ("render-overlays", "examples-empty", params(overlays__examples=[]), "overlays.examples"),
    ("render-overlays", "n-best-worst-0", params(overlays__n_best_worst=0), "overlays.n_best_worst"),
    ("render-overlays", "threshold-1.5", params(evaluate__threshold=1.5), "evaluate.threshold"),
]


def make_workspace(tmp_path, request, stage: Stage) -> Workspace:
    ws = Workspace(tmp_path, models=request.getfixturevalue("model_files") if stage.needs_models else {})
    stage.build(ws)
    for name, file_name in stage.outputs.items():
        ws.paths[name] = ws.outputs / file_name
    return ws


def assert_refused(result, ws: Workspace, stage: Stage, names: str) -> None:
    stderr = result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, stderr[-3000:]
    message = error_lines[0]
    assert stderr.strip().splitlines()[-1] == message, f"the error must be one line, and the last:\n{stderr}"
    assert names in message, message
    assert FIX_VERBS.search(message), f"says what is wrong but not what to do: {message}"
    left = [name for name in stage.outputs if ws.paths[name].exists()]
    assert not left, f"outputs left behind: {left}"
    written = [str(p.relative_to(ws.outputs)) for p in ws.outputs.rglob("*") if not p.is_dir()] \
        if ws.outputs.exists() else []
    assert not written, f"files written under outputs/: {written}"


@pytest.mark.integration
@pytest.mark.parametrize("stage_name, break_it, names",
                         [case[:1] + case[2:] for case in CASES],
                         ids=[f"{stage}:{case_id}" for stage, case_id, *_ in CASES])
def test_stage_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, request, stage_name, break_it, names):
    stage = STAGES[stage_name]
    ws = make_workspace(tmp_path, request, stage)
    break_it(ws)
    assert_refused(ws.run(stage), ws, stage, names)


def test_every_stage_has_subprocess_cases():
    assert {stage for stage, *_ in CASES} == set(STAGES)


def test_case_ids_are_unique():
    ids = [(stage, case_id) for stage, case_id, *_ in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.integration
@pytest.mark.parametrize("stage_name, prepare", [
    ("prepare-mnist-subset", None),
    ("prepare-seg", None),
    ("prepare-seg", use_folder_source),
    ("render-overlays", None),
], ids=["prepare-mnist-subset", "prepare-seg-npy", "prepare-seg-folder", "render-overlays"])
def test_the_unbroken_inputs_are_accepted(tmp_path, request, stage_name, prepare):
    """The starting point of the cases is valid, so each case breaks exactly one thing.
    (The TensorFlow stages' starting points are the same arrays; running them costs too much here.)"""
    stage = STAGES[stage_name]
    ws = make_workspace(tmp_path, request, stage)
    if prepare:
        prepare(ws)
    result = ws.run(stage)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(ws.paths[name].exists() for name in stage.outputs)


# --- Decisions documented by a test -----------------------------------------------------------


def test_folder_images_smaller_than_32_px_are_upscaled_not_refused(tmp_path):
    """A tiny image is still an image: like every other it is resized to seg.image_size."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(5):
        Image.new("RGB", (6, 4), (40 * i, 0, 0)).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(np.eye(4, 6, dtype=np.uint8) * 255).save(tmp_path / "masks" / f"{i}.png")
    splits = load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0)
    images, masks = splits.train.stacked()
    assert images.shape[1:] == (64, 64, 3)
    assert set(np.unique(masks).tolist()) == {0, 1}
    kept_aspect = load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, resize="keep_aspect")
    assert {image.shape for image in kept_aspect.train.images} == {(43, 64, 3)}    # 4 x 6 -> 43 x 64


# --- Property-based: whatever comes in, only FcnlabError comes out -------------------------------

DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_,
                          np.complex64, "U2", "S2"])


def any_array(max_dims=5, max_side=5):
    return hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))


PROPERTY_SETTINGS = settings(max_examples=80, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY_SETTINGS
@given(images=any_array(), labels=st.one_of(any_array(), st.just(None)))
def test_npy_source_raises_only_fcnlab_error_on_any_arrays(images, labels):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        np.save(folder / "seg_train_imgs.npy", images)
        if labels is None:        # well-formed labels for however many images there are
            n = images.shape[0] if images.ndim >= 1 else 1
            labels = one_hot(quarter_masks(n, *(images.shape[1:3] if images.ndim >= 3 else (4, 4))))
        np.save(folder / "seg_train_labels.npy", labels)
        try:
            splits = load_npy_source(folder, 32, 0.5, seed=0)
        except FcnlabError as err:
            assert "\n" not in str(err) and "seg_train_" in str(err)
        else:
            for image, mask in zip(splits.train.images, splits.train.masks):
                assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
                assert mask.shape == (32, 32) and set(np.unique(mask).tolist()) <= {0, 1}


@PROPERTY_SETTINGS
@given(x_train=any_array(max_dims=4, max_side=30), y_train=any_array(max_dims=2, max_side=30),
       digits=st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))
def test_prepare_mnist_subset_raises_only_fcnlab_error_on_any_arrays(x_train, y_train, digits):
    x_test, y_test = np.zeros((10, 28, 28), np.uint8), np.arange(10)
    try:
        splits = prepare_mnist_subset(x_train, y_train, x_test, y_test, digits=digits, origin="test.npz")
    except FcnlabError as err:
        assert "\n" not in str(err) and "test.npz" in str(err)
    else:
        check_prepared_digits(splits.arrays(), "prepared")   # what it returns, later stages accept


@st.composite
def ragged_files(draw):
    """(shapes, images, masks) for one prepared split: each either well formed or any array."""
    sizes = draw(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3))
    n_pixels = sum(height * width for height, width in sizes)
    shapes = draw(st.one_of(st.just(np.array(sizes, np.int64)), any_array(max_dims=3)))
    images = draw(st.one_of(hnp.arrays(np.uint8, (n_pixels, 3)), any_array(max_dims=3, max_side=40)))
    masks = draw(st.one_of(hnp.arrays(np.uint8, n_pixels, elements=st.integers(0, 1)),
                           hnp.arrays(np.uint8, n_pixels), any_array(max_dims=2, max_side=40)))
    return shapes, images, masks


@PROPERTY_SETTINGS
@given(files=ragged_files())
def test_prepared_split_loader_raises_only_fcnlab_error_and_what_passes_can_be_scored(files):
    shapes, images, masks = files
    with tempfile.TemporaryDirectory() as folder:
        for kind, array in zip(("shapes", "images", "masks"), files):
            np.save(Path(folder) / f"test-00000-of-00001_{kind}.npy", array)
        try:
            split = load_prepared_split(folder, "test")
        except FcnlabError as err:
            assert "\n" not in str(err) and "test-00000-of-00001_" in str(err) and "prepare-seg" in str(err)
        else:
            assert [mask.shape for mask in split.masks] == [tuple(size) for size in shapes]
            metrics = segmentation_metrics(pixels(split.masks), pixels(split.masks))
            assert metrics["pixel_accuracy"] == 1.0
            assert len(per_image_metrics(split.masks, [1 - mask for mask in split.masks])) == len(split)
            del split                                     # let go of the memory-mapped files


@PROPERTY_SETTINGS
@given(probs=st.one_of(any_array(max_dims=2, max_side=30),
                       hnp.arrays(np.float32, 24, elements=st.floats(0, 1, width=32))),
       shapes=st.one_of(st.just(np.array([[3, 4], [2, 6]], np.int64)), any_array(max_dims=3)))
def test_predictions_loader_raises_only_fcnlab_error(probs, shapes):
    test = SegSplit([np.zeros((3, 4, 3), np.uint8), np.zeros((2, 6, 3), np.uint8)],
                    [np.zeros((3, 4), np.uint8), np.zeros((2, 6), np.uint8)])
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "test_fg_probs.npy", probs)
        np.save(Path(folder) / "test_shapes.npy", shapes)
        try:
            loaded = load_test_predictions(folder, test)
        except FcnlabError as err:
            assert "\n" not in str(err) and ("test_fg_probs.npy" in str(err) or "test_shapes.npy" in str(err))
        else:
            assert [p.shape for p in loaded] == [(3, 4), (2, 6)]
            assert all(0 <= p.min() and p.max() <= 1 for p in loaded)
            del loaded


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6)


@PROPERTY_SETTINGS
@given(value=YAML_VALUES)
def test_params_accessors_raise_only_fcnlab_error_on_any_value(value):
    section = Section("params.yaml", "any", {"key": value})
    for read in (lambda: section.integer("key", minimum=1), lambda: section.number("key", minimum=0.0),
                 lambda: section.boolean("key"), lambda: section.string("key"),
                 lambda: section.int_list("key", minimum=0, maximum=9), lambda: section.number_pairs("key"),
                 lambda: section.section("key")):
        try:
            read()
        except FcnlabError as err:
            assert "any.key" in str(err) and "\n" not in str(err)
