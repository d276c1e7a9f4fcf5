"""Issue 21: files and commands never lose a user's data, read images as viewers show them, and
fail with one `error:` line. Each test is named after the issue's trigger it covers (21_1 ... 21_7);
the last tests feed the commands random bad paths and files (hypothesis).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import ROOT, default_sigint
from fcnlab.cli import main
from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import (MAX_IMAGE_PIXELS, atomic_path, load_model, read_rgb_image, save_arrays, save_png,
                            save_text)
from fcnlab.seg.segment import OVERLAY_RGBA, overlay_image
from fcnlab.seg.sources import folder_source, read_image_and_mask
from test_bad_inputs import STAGES, assert_refused, make_workspace

CONSOLE_SCRIPT = Path(sys.executable).with_name("fcnlab")
ORIENTATION = 0x0112            # the EXIF tag




def pixels(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def run_console(*args: str, cwd=ROOT, **popen) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([str(CONSOLE_SCRIPT), *args], cwd=cwd, env=env, text=True, **popen)


def tree_state(root: Path, skip: Path | None = None) -> dict:
    """{relative path: (kind, size, mtime_ns)} of everything under `root` except `skip`."""
    state = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        info = path.lstat()
        state[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
    return state


# --- 1. A file writer never replaces a folder ------------------------------------------------------


@pytest.mark.parametrize("write", [lambda p: save_text(p, "x"), lambda p: save_png(p, pixels((4, 4)))],
                         ids=["save_text", "save_png"])
def test_21_1_writer_refuses_directory_target(tmp_path, write):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("the user's")

    with pytest.raises(FcnlabError, match="results: a folder of that name exists, and fcnlab never replaces a folder"):
        write(folder)

    assert (folder / "keep.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]         # no temporary left


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_21_1_encode_csv_onto_a_folder_keeps_the_folder(models, tmp_path, capsys, force):
    digit = write_png(tmp_path / "digit.png", pixels((28, 28), seed=1))
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("the user's")

    status = main(["encode", str(digit), "--encoder", str(models["encoder"]), "--csv", str(results), *force])

    assert status == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and str(results) in errors[0]
    assert results.is_dir() and (results / "keep.txt").read_text() == "the user's"


# --- 2. Outputs are never overwritten without --force; stems compared case-insensitively -----------


def test_21_2_segment_refuses_to_overwrite_a_ground_truth_mask_without_force(models, tmp_path, capsys):
    data = tmp_path / "data"
    image = write_png(data / "img.png", pixels((32, 32, 3), seed=2))
    truth = write_png(data / "img_mask.png", (pixels((32, 32), seed=3) > 127).astype(np.uint8) * 255)
    truth_bytes = truth.read_bytes()

    status = main(["segment", str(image), "--model", str(models["fcn"]), "--out", str(data),
                   "--precision", "float32"])

    assert status == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "img_mask.png" in errors[0] and "--force" in errors[0]
    assert truth.read_bytes() == truth_bytes
    assert sorted(p.name for p in data.iterdir()) == ["img.png", "img_mask.png"]

    assert main(["segment", str(image), "--model", str(models["fcn"]), "--out", str(data),
                 "--precision", "float32", "--force"]) == 0
    assert truth.read_bytes() != truth_bytes                                 # replaced, as asked


def test_21_2_segment_refuses_stems_that_differ_only_in_case(models, tmp_path, capsys):
    upper = write_png(tmp_path / "Cat.png", pixels((32, 32, 3), seed=4))
    lower = write_png(tmp_path / "in" / "cat.png", pixels((32, 32, 3), seed=5))

    status = main(["segment", str(upper), str(lower), "--model", str(models["fcn"]),
                   "--out", str(tmp_path / "out")])

    assert status == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "share the name" in errors[0]
    assert not (tmp_path / "out").exists()


def test_21_2_decode_and_report_refuse_an_existing_out_without_force(models, tmp_path, capsys):
    picture = write_png(tmp_path / "fake.png", pixels((5, 5), seed=6))
    page = tmp_path / "page.html"
    page.write_text("the user's page")
    (tmp_path / "dvc.yaml").write_text("plots: []\n")
    before = picture.read_bytes()

    assert main(["decode", "0", "0", "--decoder", str(models["decoder"]), "--out", str(picture)]) == 2
    assert main(["report", "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--out", str(page)]) == 2

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 2 and all("--force" in line for line in errors)
    assert picture.read_bytes() == before and page.read_text() == "the user's page"
    assert main(["report", "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--out", str(page), "--force"]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")


# --- 3. Images are read as viewers show them (EXIF orientation) -----------------------------------


def rotated_jpeg(path: Path, stored: np.ndarray, orientation: int = 6) -> np.ndarray:
    """Save `stored` as a JPEG whose EXIF says "turn me" (6: 90 degrees clockwise); return the
    decoded sensor-orientation pixels (what a reader that ignores EXIF gets)."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    with Image.open(path) as raw:
        return np.asarray(raw.convert("RGB"))


def test_21_3_the_reader_applies_the_exif_orientation(tmp_path):
    sensor = rotated_jpeg(tmp_path / "photo.jpg", pixels((20, 40, 3), seed=7))        # 40 wide, 20 high

    shown = read_rgb_image(tmp_path / "photo.jpg")

    assert shown.shape == (40, 20, 3)                                       # as a viewer shows it
    assert np.array_equal(shown, np.rot90(sensor, k=-1))                    # turned 90 degrees clockwise


def test_21_3_a_rotated_photo_pairs_with_the_mask_drawn_on_it_as_shown(tmp_path):
    """The mask is drawn on the photo as a viewer shows it (20 wide x 40 high)."""
    (tmp_path / "images").mkdir()
    rotated_jpeg(tmp_path / "images" / "a.jpg", pixels((20, 40, 3), seed=8))
    mask = np.zeros((40, 20), np.uint8)
    mask[:10] = 255                                                         # the top, as shown
    write_png(tmp_path / "masks" / "a.png", mask)

    image, binary = read_image_and_mask(tmp_path / "images" / "a.jpg", tmp_path / "masks" / "a.png",
                                        "none", 64, foreground_value=1)

    assert image.shape == (40, 20, 3) and binary.shape == (40, 20)
    assert binary[:10].all() and not binary[10:].any()
    for name in ("b", "c"):
        write_png(tmp_path / "images" / f"{name}.png", pixels((40, 20, 3), seed=9))
        write_png(tmp_path / "masks" / f"{name}.png", mask)
    sizes = folder_source(tmp_path, 64, 1, 0.34, 0.34, seed=0, resize="none").all_sizes()
    assert sizes == [(40, 20)] * 3                                          # from the headers, as shown


def test_21_3_segment_writes_masks_that_overlay_the_photo_as_shown(models, tmp_path):
    rotated_jpeg(tmp_path / "photo.jpg", pixels((20, 40, 3), seed=10))

    assert main(["segment", str(tmp_path / "photo.jpg"), "--model", str(models["fcn"]),
                 "--out", str(tmp_path / "out"), "--native", "--precision", "float32"]) == 0

    for name in ("photo_mask.png", "photo_overlay.png"):
        with Image.open(tmp_path / "out" / name) as written:
            assert written.size == (20, 40)


# --- 4. One pixel cap for every reader; the overlay is blended in uint8, in bands ------------------


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small all-black PNG whose header claims width x height (the data is a few bytes)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = bytes(data[12:16]) + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = zlib.crc32(header).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side", [10_001, 13_000, 20_000])
def test_21_4_every_reader_refuses_images_over_the_pixel_cap(tmp_path, side):
    big = png_claiming(tmp_path / "big.png", side, side)
    assert side * side > MAX_IMAGE_PIXELS
    with pytest.raises(FcnlabError, match=rf"big.png: .*{side * side / 1e6:.1f} megapixels\)? is more than "
                                          rf"fcnlab reads \({MAX_IMAGE_PIXELS / 1e6:g} megapixels\); downscale it"):
        read_rgb_image(big)


def test_21_4_segment_reports_a_13000_px_square_png_in_one_line(models, tmp_path, capsys):
    big = png_claiming(tmp_path / "big.png", 13_000, 13_000)

    status = main(["segment", str(big), "--model", str(models["fcn"]), "--out", str(tmp_path / "out")])

    assert status == 1
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "big.png: 13000 x 13000 pixels" in errors[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_21_4_the_overlay_needs_a_few_bytes_a_pixel_and_equals_the_float_blend():
    image = pixels((3000, 1000, 3), seed=11)                                # 3 megapixels
    mask = pixels((3000, 1000), seed=12) > 100
    *tint, alpha = OVERLAY_RGBA

    tracemalloc.start()
    overlay = overlay_image(image, mask)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak < 8 * mask.size                 # the uint8 result (3 bytes) plus one band; float64: ~59
    expected = np.rint(image * (1 - alpha * mask[..., None]) + 255 * np.array(tint) * alpha * mask[..., None])
    assert overlay.dtype == np.uint8 and np.array_equal(overlay, expected.astype(np.uint8))


# --- 5. Model, geometry, report, params, Ctrl-C and closed pipes: one line, no traceback ----------


REPORT_CASES = {
    "yaml-data-plot": ({"plots": ["d.yaml"]}, {"d.yaml": "- {step: 0, loss: 1.0}\n- {step: 1, loss: 0.5}\n"},
                       "1 charts"),
    "numeric-title": ({"plots": [{"d.csv": {"title": 2024, "y": "loss"}}]}, {"d.csv": "step,loss\n0,1\n1,0.5\n"},
                      "1 charts"),
    "csv-field-over-131072-chars": ({"plots": ["d.csv"]}, {"d.csv": "a,b\n" + "x" * 140_000 + ",1\n"},
                                    "1 unreadable"),
    "date-in-yaml-metrics": ({"metrics": ["m.yaml"]}, {"m.yaml": "trained: 2024-05-01\niou: 0.5\n"},
                             "1 metrics files"),
}


@pytest.mark.parametrize("case", REPORT_CASES, ids=list(REPORT_CASES))
def test_21_5_report_reads_what_dvc_plots_accepts_without_a_traceback(tmp_path, capsys, case):
    pipeline, files, summary = REPORT_CASES[case]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    assert main(["report", "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--out", str(tmp_path / "r.html")]) == 0

    assert summary in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text()
    assert {"numeric-title": "<h3>2024</h3>", "date-in-yaml-metrics": "2024-05-01"}.get(case, "<!DOCTYPE") in page


def rewritten_keras_file(source: Path, target: Path, change) -> Path:
    """A copy of a .keras zip with `change(name, bytes)` applied to each member (None: left out)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            data = change(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
    return target


def with_unknown_layer_option(name: str, data: bytes):
    if name != "config.json":
        return data
    config = json.loads(data)
    for layer in config["config"]["layers"]:
        layer["config"]["option_of_a_newer_keras"] = 1
    return json.dumps(config).encode()


@pytest.mark.parametrize("change, says", [
    (lambda name, data: None if name == "config.json" else data, "config.json"),
    (with_unknown_layer_option, "cannot rebuild the model"),
], ids=["zip-without-config.json", "layer-option-keras-does-not-know"])
def test_21_5_a_model_keras_cannot_load_is_one_error_line(models, tmp_path, capsys, change, says):
    broken = rewritten_keras_file(models["decoder"], tmp_path / "broken.keras", change)

    with pytest.raises(FcnlabError, match=re.escape(str(broken))):
        load_model(broken)
    status = main(["decode", "0", "0", "--decoder", str(broken), "--out", str(tmp_path / "x.png")])

    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {broken}: ") and says in err[0]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("image_size", [0, 100, 65536])
def test_21_5_a_geometry_record_out_of_range_stops_segment_before_any_image(models, tmp_path, capsys, image_size):
    model = tmp_path / "fcn.keras"
    model.write_bytes(models["fcn"].read_bytes())
    (tmp_path / "fcn.geometry.json").write_text(json.dumps({"resize": "square", "image_size": image_size}))
    image = write_png(tmp_path / "a.png", pixels((32, 32, 3), seed=13))

    status = main(["segment", str(image), "--model", str(model), "--out", str(tmp_path / "out")])

    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fcn.geometry.json: not a geometry record" in err[0] and "from 32 to 8192" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
@pytest.mark.parametrize("stage_name, key", [("train-cae", "cae.seed"), ("train-fcn", "fcn.seed")])
def test_21_5_a_seed_of_2_to_the_32_is_refused_by_the_training_stages(tmp_path, request, stage_name, key):
    stage = STAGES[stage_name]
    ws = make_workspace(tmp_path, request, stage)
    ws.set(key, 2**32)
    assert_refused(ws.run(stage), ws, stage, key)


@pytest.mark.integration
def test_21_5_ctrl_c_exits_130_with_one_line(models, tmp_path):
    images = [write_png(tmp_path / "in" / f"{i:03d}.png", pixels((64, 64, 3), seed=i)) for i in range(300)]
    process = run_console("segment", *map(str, images), "--model", str(models["fcn"]), "--out",
                          str(tmp_path / "out"), "--native", "--precision", "float32",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    first = process.stderr.readline()                        # the first file's progress line
    while first and not first.startswith("segment [1/300]"):
        first = process.stderr.readline()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)

    assert first.startswith("segment [1/300]"), err
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert error_lines(err) == [err.strip().splitlines()[-1]] and "interrupted" in err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written and all(re.fullmatch(r"\d{3}_(mask|overlay)\.png", name) for name in written)


@pytest.mark.integration
def test_21_5_a_closed_stdout_ends_encode_quietly(models, tmp_path):
    """`fcnlab encode ... | head -1`: the reader has gone before the CSV is written."""
    digit = write_png(tmp_path / "digit.png", pixels((28, 28), seed=14))
    process = run_console("encode", str(digit), "--encoder", str(models["encoder"]),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()                                   # as `head` does once it has its line
    err = process.stderr.read()
    process.wait(timeout=120)

    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
    assert error_lines(err) == []
    assert process.returncode == 141


# --- 6. Temporary files: tempfile names in the target's folder, rename-aside, stale ones removed --


TEMP_NAME = re.compile(r"\.fcnlab-tmp-[0-9a-f]{8}-(\d+)-[a-z0-9_]{8,}")


def test_21_6_temporaries_are_private_unpredictable_and_beside_the_target(tmp_path):
    seen = []
    for _ in range(2):
        with atomic_path(tmp_path / "out.json") as tmp:
            seen.append(tmp)
            tmp.write_text("{}")
            folder = tmp.parent
            assert folder.parent == tmp_path and tmp.name == "out.json"
            assert TEMP_NAME.fullmatch(folder.name) and TEMP_NAME.fullmatch(folder.name)[1] == str(os.getpid())
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert seen[0].parent.name != seen[1].parent.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_21_6_a_replaced_folder_is_never_seen_half_deleted(tmp_path):
    """Whatever folder is at the target path holds all its files: the old one is deleted only
    after it has been renamed aside (a reader that opened it before may still watch it go)."""
    names = [f"a{i:03d}" for i in range(400)]
    target = tmp_path / "arrays"
    save_arrays(target, **{name: np.zeros(1) for name in names})
    checks, partial, stop = [], [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                count = len(os.listdir(fd))
                try:
                    at_target = os.stat(target).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    at_target = False
                checks.append(count)
                if count != len(names) and at_target:
                    partial.append(count)
            finally:
                os.close(fd)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(15):
            save_arrays(target, **{name: np.ones(1) for name in names})
    finally:
        stop.set()
        watcher.join()

    assert len(checks) > 100 and not partial, f"{len(partial)} half-deleted folders at the target: {partial[:5]} files"


KILLED_WRITER = """
import sys, time
from pathlib import Path
from fcnlab.core.io import atomic_path
with atomic_path(Path(sys.argv[1]) / "prepared") as tmp:
    tmp.mkdir()
    (tmp / "shard.npy").write_bytes(b"0" * 100_000)
    print("writing", flush=True)
    time.sleep(600)
"""


def test_21_6_temporaries_of_a_killed_process_are_removed_at_the_next_write(tmp_path):
    (tmp_path / ".fcnlab-tmp-notes").write_text("the user's, not a temporary")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert writer.stdout.readline() == "writing\n"
    living = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert living.stdout.readline() == "writing\n"
    writer.kill()                                            # SIGKILL: no cleanup runs
    writer.wait()
    try:
        left = [p for p in tmp_path.iterdir() if str(writer.pid) in p.name]
        assert len(left) == 1 and (left[0] / "prepared" / "shard.npy").is_file()

        save_text(tmp_path / "next.txt", "the next write")

        assert not left[0].exists()
        assert [p for p in tmp_path.iterdir() if str(living.pid) in p.name]       # still writing: kept
        assert (tmp_path / ".fcnlab-tmp-notes").read_text() == "the user's, not a temporary"
    finally:
        living.kill()
        living.wait()


# --- 7. Multi-frame files refused; names escaped in the CSV and on the terminal --------------------


@pytest.mark.parametrize("suffix", ["gif", "tif"])
def test_21_7_multi_frame_files_are_refused_not_cut_to_their_first_frame(tmp_path, suffix):
    frames = [Image.fromarray(pixels((16, 16, 3), seed=i)) for i in range(3)]
    path = tmp_path / f"animation.{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])

    with pytest.raises(FcnlabError, match=f"animation.{suffix}: holds 3 frames .* save the frame you want"):
        read_rgb_image(path)


def test_21_7_encode_escapes_formulas_in_the_csv_and_control_characters_on_the_terminal(
        models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    formula = write_png(Path("=HYPERLINK(1).png"), pixels((28, 28), seed=15))
    plain = write_png(Path("plain.png"), pixels((28, 28), seed=16))
    escape = Path("\x1b]0;owned\x07\x1b[2J.png")
    escape.write_bytes(b"")

    status = main(["encode", str(formula), str(plain), str(escape), "--encoder", str(models["encoder"]),
                   "--csv", "latents.csv"])

    assert status == 1
    rows = Path("latents.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["path", "'=HYPERLINK(1).png", "plain.png"]
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    errors = error_lines(err)
    assert len(errors) == 1 and "\\x1b]0;owned\\x07\\x1b[2J.png" in errors[0]


# --- Random bad paths and files into every command ------------------------------------------------


def bad_file(draw, folder: Path, name: str) -> Path:
    """A path that is not a usable input: missing, empty, a folder, random bytes, a truncated PNG,
    or a zip that is not a Keras model."""
    path = folder / name
    kind = draw(st.sampled_from(["missing", "empty", "folder", "bytes", "truncated-png", "zip"]))
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "bytes":                            # \x89: not UTF-8 text, as binary formats begin
        path.write_bytes(b"\x89" + draw(st.binary(max_size=300)))
    elif kind == "truncated-png":
        buffer = io.BytesIO()
        Image.fromarray(pixels((16, 16, 3))).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[:draw(st.integers(8, len(buffer.getvalue()) - 13))])
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(draw(st.sampled_from(["metadata.json", "model.weights.h5", "notes.txt"])),
                             draw(st.binary(max_size=50)))
    return path


FILE_NAMES = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                     min_size=1, max_size=12).filter(lambda name: name not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_21_commands_given_bad_paths_and_files_fail_in_one_line_and_write_only_under_out(models, capsys, data):
    draw = data.draw
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        inputs, out = root / "inputs", root / "out"
        inputs.mkdir()
        command = draw(st.sampled_from(["segment", "encode", "decode", "report"]))
        name = draw(FILE_NAMES)
        bad_model = draw(st.booleans()) or command == "decode"
        if command == "report":
            argv = ["report", "--dvc-yaml", str(bad_file(draw, inputs, name)), "--out", str(out / "r.html")]
        else:
            model_kind = {"segment": "fcn", "encode": "encoder", "decode": "decoder"}[command]
            model = bad_file(draw, inputs, name + ".keras") if bad_model else models[model_kind]
            image = bad_file(draw, inputs, name + ".png") if not bad_model else write_png(
                inputs / "ok.png", pixels((28, 28, 3)))
            flag = {"segment": "--model", "encode": "--encoder", "decode": "--decoder"}[command]
            argv = {"segment": ["segment", str(image), flag, str(model), "--out", str(out), "--native",
                                "--precision", "float32"],
                    "encode": ["encode", str(image), flag, str(model), "--csv", str(out / "z.csv")],
                    "decode": ["decode", "1", "2", flag, str(model), "--out", str(out / "d.png")]}[command]
        before = tree_state(root, skip=out)
        capsys.readouterr()

        status = main(argv)

        err = capsys.readouterr().err
        assert status in (1, 2), (argv, err)
        assert len(error_lines(err)) == 1, (argv, err)
        assert "Traceback" not in err and "\x1b" not in err
        assert tree_state(root, skip=out) == before
        assert not [p for p in root.rglob(".fcnlab-tmp-*")]


PLOT_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True)
                           | st.sampled_from(["d.csv", "d.yaml", "missing.tsv", "img.png", "x", "loss", "."]),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["d.csv", "title", "x", "y", "template", 1]),
                                             inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plots=PLOT_VALUES, metrics=PLOT_VALUES, stages=PLOT_VALUES)
def test_21_report_on_any_dvc_yaml_shape_writes_the_page_or_one_error_line(tmp_path, capsys, plots, metrics,
                                                                           stages):
    (tmp_path / "d.csv").write_text("step,loss\n0,1\n1,0.5\n")
    (tmp_path / "d.yaml").write_text("- {step: 0, loss: x}\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots, "metrics": metrics, "stages": stages}))
    out = tmp_path / "r.html"
    capsys.readouterr()

    status = main(["report", "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--out", str(out), "--force"])

    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err
    assert len(error_lines(err)) == (status == 2)
    assert out.is_file() == (status == 0)
    out.unlink(missing_ok=True)
