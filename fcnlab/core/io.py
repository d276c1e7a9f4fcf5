"""File I/O for stage and command outputs: atomic, deterministic, and safe to read back.

Every writer here goes through `atomic_path`: the bytes land in a private temporary folder
beside the target (`tempfile.mkdtemp`, named `.fcnlab-tmp-<host>-<pid>-<random>`) and are
renamed into place only when complete, so a killed stage never leaves a half-written output
that DVC (or the next stage) could mistake for a real one. A folder being replaced is first
renamed aside, so the target always holds a whole old or a whole new folder. A file writer
never replaces a folder, and `overwrite=False` (the `fcnlab` commands without --force) never
replaces anything. Temporary folders left by a process that was killed are removed by the
next write into the same folder.

Every writer is also deterministic: the same content gives the same bytes (no timestamps in
JSON, PNG, NumPy or Keras files), which is what lets `dvc repro` skip unchanged stages.

Every reader refuses pickled data (`allow_pickle=False`) and loads Keras models in safe mode.
Image files are read by one reader, `open_image` (any 8-bit format Pillow decodes): as image
viewers show them (EXIF orientation applied), at most `MAX_IMAGE_PIXELS`, one frame per file,
with errors that name the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from fcnlab.core.errors import FcnlabError

# A fixed date for every zip member (the earliest a zip file can hold).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


# Temporary folders: `.fcnlab-tmp-<host>-<pid>-<random>`. The host and process id say whose
# it is (a dead process's is removed by the next write); mkdtemp's random part makes the
# name unpredictable and its creation exclusive.
TEMP_PREFIX = ".fcnlab-tmp-"
_HOST_TAG = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True):
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds.

    Works for files and for folders (the block creates whichever it wants at the temporary
    path). On any exception the temporary is removed and `path` is untouched. An existing
    folder is replaced only by a folder (renamed aside, then the new one renamed in), never by
    a file; with `overwrite=False` an existing `path` is refused before the block runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        refuse_existing(path)
    remove_stale_temporaries(path.parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{_HOST_TAG}-{os.getpid()}-", dir=path.parent))
    tmp = folder / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"internal error: nothing was written for {path}")
        if not overwrite:
            refuse_existing(path)
        _move_into_place(tmp, path, aside=folder / ".replaced")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def refuse_existing(path: Path) -> None:
    """FcnlabError if anything (file, folder or link) is at `path`: the commands' no-overwrite rule."""
    if os.path.lexists(path):
        kind = "a folder" if path.is_dir() and not path.is_symlink() else "a file"
        raise FcnlabError(f"{path}: {kind} of that name exists; pass --force to replace it, or choose "
                          "another output name")


def _move_into_place(tmp: Path, path: Path, aside: Path) -> None:
    new_is_folder = tmp.is_dir()
    old_is_folder = path.is_dir() and not path.is_symlink()
    if old_is_folder and not new_is_folder:
        raise FcnlabError(f"{path}: a folder of that name exists, and fcnlab never replaces a folder "
                          "by a file; move the folder away or choose another file name")
    if new_is_folder and os.path.lexists(path) and not old_is_folder:
        raise FcnlabError(f"{path}: a file of that name exists where a folder is written; move the "
                          "file away or choose another name")
    if not old_is_folder:
        os.replace(tmp, path)
        return
    os.rename(path, aside)                  # the old folder, whole, into the temporary folder
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside, path)
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary folders in `folder` left by dead processes of this host; return them."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if (match and match["host"] == _HOST_TAG and not _process_alive(int(match["pid"]))
                and entry.is_dir() and not entry.is_symlink()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":    # os.kill(pid, 0) only probes on POSIX
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                                 # another user's process: alive
        return True
    return True


def remove_path(path) -> None:
    """Delete a file, link or whole directory at `path`, if there is one."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def free_disk_bytes(path) -> int:
    """Free bytes on the disk that holds `path` (or, if it does not exist yet, its nearest parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


# --- JSON -------------------------------------------------------------------------------------


def save_json(path, obj) -> None:
    """Write `obj` as pretty, key-sorted JSON (floats as Python writes them), atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def load_json(path):
    path = Path(path)
    if not path.is_file():
        raise FcnlabError(f"{path}: file not found; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FcnlabError(f"{path}: not valid JSON ({err}); delete it and rerun its stage") from None


def save_text(path, text: str, overwrite: bool = True) -> None:
    """`text` as UTF-8, atomically (`overwrite=False`: refuse an existing `path`)."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_csv(path, rows: list[dict]) -> None:
    """Rows of equal keys as CSV (header from the first row's keys; None written empty)."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    columns = list(rows[0])
    lines = [",".join(columns)]
    lines += [",".join("" if row[c] is None else str(row[c]) for c in columns) for row in rows]
    save_text(path, "\n".join(lines) + "\n")


# --- NumPy arrays -----------------------------------------------------------------------------


def save_arrays(directory, **arrays: np.ndarray) -> None:
    """Write each array as `<directory>/<name>.npy`, replacing the directory atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name, array in sorted(arrays.items()):
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_npy(path) -> np.ndarray:
    """Load one `.npy` file without ever unpickling; every failure names the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FcnlabError(f"{path}: file not found; rerun the stage that writes it (dvc repro)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise FcnlabError(
                f"{path}: holds Python objects that need pickle to load, which fcnlab refuses "
                "for safety; save it again as a plain numeric array (np.save(path, arr.astype(np.uint8)))"
            ) from None
        raise FcnlabError(f"{path}: not a readable .npy array ({err}); write it again with np.save") from None
    except (OSError, EOFError, MemoryError, OverflowError) as err:
        raise FcnlabError(f"{path}: truncated or corrupt .npy file ({type(err).__name__}: {err}); "
                          "write it again with np.save, or rerun the stage that writes it") from None


def load_arrays(directory, *names: str) -> dict[str, np.ndarray]:
    directory = Path(directory)
    return {name: load_npy(directory / f"{name}.npy") for name in names}


# --- Figures ----------------------------------------------------------------------------------


def save_figure(fig, path, dpi: int = 100) -> None:
    """Save a Matplotlib figure as PNG with no software/date metadata, atomically, and close it."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(_png_bytes(fig, dpi))


def save_figures(directory, figures: dict, dpi: int = 100) -> None:
    """Save {file name: figure} as PNGs in `directory`, replacing the directory atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name, fig in sorted(figures.items()):
            (tmp / name).write_bytes(_png_bytes(fig, dpi))


def _png_bytes(fig, dpi: int) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# --- Image files ----------------------------------------------------------------------------


# The one pixel cap of every image fcnlab reads: 100 megapixels (e.g. 10000 x 10000) is about
# 300 MB as RGB, and `fcnlab segment` holds a few bytes more a pixel (probabilities, mask).
MAX_IMAGE_PIXELS = 100_000_000
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)     # EXIF Orientation values that swap width and height


def read_rgb_image(path) -> np.ndarray:
    """H x W x 3 uint8 from any 8-bit image Pillow reads (grayscale copied to 3 channels, alpha
    dropped), as `open_image` reads it."""
    path = Path(path)
    return as_rgb(open_image(path), path)


def existing_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise FcnlabError(f"{path}: a folder, not an image file; pass the images in it (e.g. {path}/*.png)")
    if not path.is_file():
        raise FcnlabError(f"{path}: file not found")
    return path


def open_image(path) -> Image.Image:
    """The one image reader: the decoded image as image viewers show it (its EXIF orientation
    applied), pixels loaded and file closed. A missing, empty, unreadable, multi-frame, or
    larger than `MAX_IMAGE_PIXELS` file raises FcnlabError naming it."""
    path = existing_file(path)
    if path.stat().st_size == 0:
        raise FcnlabError(f"{path}: empty (0-byte) file; replace it with the real image or delete it")
    try:
        with warnings.catch_warnings():                     # the cap below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixel_count(path, *image.size)
                _check_single_frame(path, image)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                return image
    except FcnlabError:
        raise
    except Image.DecompressionBombError as err:     # Pillow's own cap (twice ours) stops it first
        raise FcnlabError(_over_the_cap(path, _pixels_in(err))) from None
    except MemoryError:
        raise FcnlabError(f"{path}: not enough memory to decode it; downscale it first") from None
    except Exception as err:            # Pillow's decoders raise many types on a corrupt file
        raise FcnlabError(f"{path}: not a readable image ({type(err).__name__}: {err}); "
                          "replace it or delete it") from None


def image_size_as_shown(path) -> tuple[int, int]:
    """(width, height) of an image file as viewers show it, from its header alone (no
    decoding); FcnlabError if it cannot be read or is over the pixel cap."""
    path = existing_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(ExifTags.Base.Orientation)
    except Image.DecompressionBombError as err:
        raise FcnlabError(_over_the_cap(path, _pixels_in(err))) from None
    except Exception as err:            # as in open_image
        raise FcnlabError(f"{path}: not a readable image ({type(err).__name__}: {err}); "
                          "replace it or delete it") from None
    _check_pixel_count(path, width, height)
    return (height, width) if orientation in _ROTATED_ORIENTATIONS else (width, height)


def _check_pixel_count(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise FcnlabError(_over_the_cap(path, f"{width} x {height} pixels ({width * height / 1e6:.1f} megapixels)"))


def _over_the_cap(path: Path, size: str) -> str:
    return (f"{path}: {size} is more than fcnlab reads ({MAX_IMAGE_PIXELS / 1e6:g} megapixels); "
            "downscale it first")


def _pixels_in(error: Exception) -> str:
    """"400.0 megapixels" from Pillow's "Image size (400000000 pixels) exceeds limit ..."."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return f"{int(found[1]) / 1e6:.1f} megapixels" if found else "the image's size"


def _check_single_frame(path: Path, image: Image.Image) -> None:
    """Refuse animations and multi-page files; a camera's MPO JPEG (photo plus previews) is
    read as its first frame, the photo."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        raise FcnlabError(f"{path}: holds {frames} frames (an animation or a multi-page file); fcnlab "
                          "reads one image per file, so save the frame you want as its own file")


def as_rgb(image: Image.Image, path: Path) -> np.ndarray:
    """H x W x 3 uint8 from an 8-bit Pillow image of any mode (alpha dropped)."""
    if image.mode.startswith(("I", "F")):
        raise FcnlabError(f"{path}: {image.mode} pixels (16/32-bit or float); fcnlab reads 8-bit images, "
                          "so convert it to 8-bit (e.g. PNG saved from a uint8 array)")
    return np.asarray(image.convert("RGB"))


def save_png(path, pixels: np.ndarray, overwrite: bool = True) -> None:
    """H x W (grayscale) or H x W x 3 (RGB) uint8 as a PNG with no metadata, atomically
    (`overwrite=False`: refuse an existing `path`)."""
    with atomic_path(path, overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG")


# --- Keras models -----------------------------------------------------------------------------


def save_model(model, path) -> None:
    """Save a Keras model as a `.keras` file whose bytes depend only on the model.

    Keras stamps `date_saved` into the archive's metadata, numbers shared objects by their
    memory address, and the zip stores file times; all three are made constant here, so retraining with the same seed and data leaves the file unchanged.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {path}")
    with atomic_path(path) as tmp:
        raw = tmp.with_name(tmp.name + ".raw.keras")
        try:
            model.save(raw)
            _rewrite_zip_deterministically(raw, tmp)
        finally:
            remove_path(raw)


def _rewrite_zip_deterministically(source: Path, target: Path) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in sorted(zin.namelist()):
            data = zin.read(name)
            if name == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode()
            elif name == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)


def _renumber_shared_objects(config):
    """Replace Keras's `shared_object_id`s (Python `id()`s, new every run) by 0, 1, 2, ..."""
    numbers: dict[int, int] = {}

    def visit(node):
        if isinstance(node, dict):
            return {key: (numbers.setdefault(value, len(numbers)) if key == "shared_object_id"
                          else visit(value)) for key, value in node.items()}
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    return visit(config)


def load_model(path, check=None):
    """Load a `.keras` model in safe mode (no arbitrary code: Lambda layers are refused).

    `check(model, path)`, if given, refuses a model of the wrong kind with a message naming the
    file (`fcnlab.seg.model.check_segmentation_model`, `fcnlab.cae.model.check_encoder_model`, ...).
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise FcnlabError(f"{path}: model file not found; run the training stage first (dvc repro)")
    if not zipfile.is_zipfile(path):
        raise FcnlabError(f"{path}: not a .keras model file (not a zip archive); "
                          "retrain it (dvc repro) or re-download it")
    model = _load_keras_file(keras, path)
    if check is not None:
        check(model, path)
    return model


def single_io_shape(tensors) -> tuple | None:
    """The shape of a model's only input (or output) tensor; None if it has several."""
    return tuple(tensors[0].shape) if len(tensors) == 1 else None


def describe_shapes(tensors) -> str:
    """A model's input (or output) shapes for an error message: "(batch, 28, 28, 1)"."""
    shapes = [str(tuple(t.shape)).replace("None", "batch", 1).replace("None", "any") for t in tensors]
    return shapes[0] if len(shapes) == 1 else f"{len(shapes)} tensors {', '.join(shapes)}"


def _load_keras_file(keras, path: Path):
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as err:
        if "lambda" in str(err).lower() or "safe_mode" in str(err):
            raise FcnlabError(
                f"{path}: the model contains a Lambda layer (arbitrary Python code); fcnlab loads "
                "models in Keras safe mode and refuses it. Use a model trained by fcnlab."
            ) from None
        raise FcnlabError(f"{path}: not a loadable Keras model ({_first_line(err)}); retrain it with "
                          "this installation (dvc repro) or install the Keras version that saved it") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise FcnlabError(f"{path}: not a readable .keras file ({err}); retrain or re-download it") from None
    except KeyError as err:             # a zip without Keras' config.json or weights
        raise FcnlabError(f"{path}: not a .keras model file ({err.args[0] if err.args else err}); "
                          "retrain it (dvc repro) or re-download it") from None
    except (TypeError, AttributeError) as err:      # a layer class or option this Keras does not know
        raise FcnlabError(f"{path}: this Keras ({keras.__version__}) cannot rebuild the model "
                          f"({type(err).__name__}: {_first_line(err)}); retrain it with this "
                          "installation (dvc repro) or install the Keras version that saved it") from None


def _first_line(error) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
