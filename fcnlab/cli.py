"""The `fcnlab` command: use the pipeline's trained models on your own files.

    fcnlab segment IMAGE... --model M --out DIR    FCN-8s masks and overlays for any-size images
    fcnlab decode Z1 Z2 --decoder D --out F.png    the CAE decoder's image of one latent point
    fcnlab encode IMAGE... --encoder E             latent coordinates of digit images, as CSV
    fcnlab export --model M --out DIR              the FCN as SavedModel, TFLite and ONNX files
    fcnlab report --out F.html                     one offline HTML page of dvc.yaml's plots and metrics

This module only parses arguments and prints; the work is in `fcnlab.seg.segment`,
`fcnlab.cae.digit_files`, `fcnlab.seg.export` and `fcnlab.report`.
Exit status: 0 all files done, 1 some files failed (each named on stderr, the rest still done),
an output could not be written or an unexpected failure (one line; FCNLAB_DEBUG=1 shows the
traceback), 2 bad arguments or an unusable model, 130 interrupted (Ctrl-C), 141 stdout closed by
its reader (`fcnlab encode ... | head -1`), as for a tool stopped by SIGPIPE.

Outputs are never overwritten without --force, and a folder is never replaced by a file. File
names are printed with control characters escaped (\x1b, not a terminal escape sequence).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
from pathlib import Path

from fcnlab import __version__
from fcnlab.core.errors import FcnlabError
from fcnlab.core.params import PRECISIONS
from fcnlab.core.quiet import quiet_tensorflow
from fcnlab.core.stage import print_unexpected_error

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141           # 128 + SIGINT, 128 + SIGPIPE, as shells report
MAX_SCALE = 100


class OutputNotWritten(FcnlabError):
    """An output file or folder could not be written (exit 1, as a failed file; 2 is for usage)."""

DESCRIPTION = """\
Use fcnlab's trained models (written by `dvc repro`) on your own files.
Models are loaded in Keras safe mode: files with Lambda layers (arbitrary code) are refused."""

EPILOG = """\
examples:
  fcnlab segment photos/*.png --model models/fcn/fcn8s_vgg16.keras --out masks/
  fcnlab decode -8 0 --decoder models/cae/decoder.keras --out fake.png --scale 8
  fcnlab encode digits/*.png --encoder models/cae/encoder.keras --csv latents.csv
  fcnlab export --model models/fcn/fcn8s_vgg16.keras --out exported/
  fcnlab report --out reports/report.html

exit status: 0 all done, 1 some input files failed (the others are still done) or an
unexpected failure, 2 bad arguments or an unusable model, 130 interrupted. No command
overwrites an existing output unless given --force. Run `fcnlab COMMAND --help` for each
command's options."""

SEGMENT_DESCRIPTION = """\
Segment images with the FCN-8s model: write DIR/<stem>_mask.png (0 background, 255 foreground)
and DIR/<stem>_overlay.png (the image with its predicted foreground tinted blue) per image.

Images: any format Pillow reads (PNG, JPEG, TIFF, ...), 8-bit grayscale, RGB or RGBA (alpha is
dropped), any size. Raw pixels go in (the model does its own preprocessing). Each image is
segmented at the scale the model was trained at, read from FILE.geometry.json beside the model
(train-fcn writes it): resized to that scale, padded by reflection to multiples of 32, predicted,
and the probabilities resized back to the image's own size, as evaluate-iou measured. --native
(or a model without that file) predicts at the image's own size instead. A pixel is foreground
if its probability is above --threshold. An unreadable file is reported on one line and
skipped; a summary ends the run. Images are read as image viewers show them (a JPEG's EXIF
orientation applied), up to 100 megapixels, one frame a file (animations and multi-page TIFFs
are refused). Existing outputs are refused unless --force; two images whose names differ only
in case (Cat.png, cat.jpg) are refused, as they share outputs on many file systems."""

SEGMENT_EPILOG = """\
examples:
  fcnlab segment scan.tif --model models/fcn/fcn8s_vgg16.keras --out masks/
  fcnlab segment data/*.png --model models/fcn/fcn8s_vgg16.keras --out masks/ --threshold 0.3"""

DECODE_DESCRIPTION = """\
Decode one point (Z1, Z2) of the CAE's 2-D latent space into a 28 x 28 grayscale image (the
seed's "generated fake image"): the decoder's output clipped to [0, 1] and stored as 0..255.
Negative coordinates work as they are (-8 0); for forms like -1e-3 put `--` before them, after
the options."""

DECODE_EPILOG = """\
examples:
  fcnlab decode -8 0 --decoder models/cae/decoder.keras --out fake.png
  fcnlab decode 2.5 -1.25 --decoder models/cae/decoder.keras --out big.png --scale 10
  fcnlab decode --decoder models/cae/decoder.keras --out tiny.png -- -1e-3 4"""

ENCODE_DESCRIPTION = """\
Print the CAE latent coordinates of digit images as CSV (path,z1,z2), to stdout or --csv FILE.

Images are read as MNIST digits are stored: converted to grayscale, resized to 28 x 28
(bilinear) if they are another size, scaled to [0, 1]. Digits must be white (bright) on a black
background, as in MNIST; nothing is inverted (a mostly bright image gets a warning).
A path starting with =, +, -, @, a tab or a carriage return is written with a leading ' so that
spreadsheets show it as text instead of running it as a formula."""

ENCODE_EPILOG = """\
examples:
  fcnlab encode digit.png --encoder models/cae/encoder.keras
  fcnlab encode digits/*.png --encoder models/cae/encoder.keras --csv latents.csv"""

EXPORT_DESCRIPTION = """\
Write the FCN-8s model in formats other runtimes load, into DIR, named after the model file:
  savedmodel  NAME_savedmodel/  a TensorFlow SavedModel (tf.saved_model.load, TF Serving)
  tflite      NAME.tflite       a float32 TFLite file (LiteRT), converted from the SavedModel
  onnx        NAME.onnx         an ONNX file (ONNX Runtime), written by Keras' exporter (tf2onnx)

Each takes float32 RGB pixels 0..255, shape (batch, H, W, 3), and gives class probabilities
(batch, H, W, 2), channel 1 the foreground, like the .keras model (it preprocesses itself). H and
W may be any multiple of 32 unless --image-size fixes them. Each file is then run by its own
runtime on a seeded random check image and compared with the .keras model: a difference above
%(tolerance)g in any probability is reported as an error. TFLite and ONNX need the `export` extra
(pip install -e ".[export]")."""

EXPORT_EPILOG = """\
examples:
  fcnlab export --model models/fcn/fcn8s_vgg16.keras --out exported/
  fcnlab export --model models/fcn/fcn8s_vgg16.keras --out exported/ --formats tflite --image-size 128"""

REPORT_DESCRIPTION = """\
Write one self-contained HTML page of the pipeline's results, read from dvc.yaml: every
top-level plot (TSV/CSV/JSON data drawn as a chart with its x, y and template; PNG images and
folders of them) and every stage's metrics files, as tables. Charts and images are embedded in
the page, which loads nothing from the network: open it in any browser, offline, or mail it.
A plot or metrics file that does not exist yet (its stage has not run) is listed as missing."""

REPORT_EPILOG = """\
examples:
  fcnlab report --out reports/report.html
  fcnlab report --dvc-yaml other/dvc.yaml --out /tmp/report.html"""


def main(argv: list[str] | None = None) -> int:
    """Run the `fcnlab` command line on `argv` (default sys.argv[1:]); return the exit status."""
    try:
        return _run_command_line(argv)
    except KeyboardInterrupt:
        clear_line = "\n" if sys.stderr.isatty() else ""
        print(f"{clear_line}error: interrupted; the files already written are complete, no partial "
              "file is left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:             # `fcnlab ... | head`: the reader has all it wants
        _send_the_rest_to_devnull()
        return EXIT_BROKEN_PIPE


def _send_the_rest_to_devnull() -> None:
    """Point stdout and stderr at /dev/null, so Python's final flush finds no closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            pass                        # a stream without a file descriptor (tests capture them)
    os.close(devnull)


def _run_command_line(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:          # --help (0) or a usage error (2): return, don't exit
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status = args.run(args)
        sys.stdout.flush()              # a closed pipe shows here, not in Python's exit
        return status
    except OutputNotWritten as err:
        _say(f"error: {_one_line(err)}", sys.stderr)
        return EXIT_SOME_FAILED
    except FcnlabError as err:
        _say(f"error: {_one_line(err)}", sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise                           # main ends quietly
    except Exception as err:            # a bug, or a case fcnlab does not foresee
        print_unexpected_error(err, f"fcnlab {args.command}", "every file it wrote is complete")
        return EXIT_SOME_FAILED


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="fcnlab", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"fcnlab {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    segment = commands.add_parser(
        "segment", help="masks and overlays of images of any size (FCN-8s)",
        description=SEGMENT_DESCRIPTION, epilog=SEGMENT_EPILOG, formatter_class=formatter)
    segment.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files to segment")
    segment.add_argument("--model", required=True, type=Path, metavar="FILE.keras",
                         help="the FCN .keras file (train-fcn writes models/fcn/fcn8s_vgg16.keras)")
    segment.add_argument("--out", required=True, type=Path, metavar="DIR",
                         help="folder for the _mask.png and _overlay.png files (created if needed)")
    segment.add_argument("--force", action="store_true",
                         help="replace existing _mask.png and _overlay.png files in DIR")
    segment.add_argument("--threshold", type=_threshold, default=0.5, metavar="P",
                         help="foreground if probability > this, 0..1 (default: 0.5)")
    segment.add_argument("--native", action="store_true",
                         help="predict at each image's own size, not at the training scale")
    segment.add_argument("--precision", default="auto", choices=PRECISIONS,
                         help="arithmetic of the network: bfloat16 is about 2x faster on CPUs with "
                              "AVX512-BF16 or AMX and on recent GPUs, slower elsewhere; "
                              "probabilities move by up to ~1e-2 (default: auto, bfloat16 where "
                              "the CPU has AVX512-BF16 or AMX, else float32)")
    segment.set_defaults(run=run_segment)

    decode = commands.add_parser(
        "decode", help="the CAE decoder's 28x28 image of a latent point (Z1, Z2)",
        description=DECODE_DESCRIPTION, epilog=DECODE_EPILOG, formatter_class=formatter)
    decode.add_argument("z1", type=_finite_float, metavar="Z1", help="first latent coordinate")
    decode.add_argument("z2", type=_finite_float, metavar="Z2", help="second latent coordinate")
    decode.add_argument("--decoder", required=True, type=Path, metavar="FILE.keras",
                        help="the CAE decoder .keras file (train-cae writes models/cae/decoder.keras)")
    decode.add_argument("--out", required=True, type=_png_path, metavar="FILE.png",
                        help="the PNG to write")
    decode.add_argument("--scale", type=_scale, default=1, metavar="N",
                        help=f"enlarge N times by nearest neighbour, 1..{MAX_SCALE} (default: 1)")
    decode.add_argument("--force", action="store_true", help="replace FILE.png if it exists")
    decode.set_defaults(run=run_decode)

    encode = commands.add_parser(
        "encode", help="latent coordinates of digit images as CSV (CAE encoder)",
        description=ENCODE_DESCRIPTION, epilog=ENCODE_EPILOG, formatter_class=formatter)
    encode.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="digit images (white digit on black, like MNIST)")
    encode.add_argument("--encoder", required=True, type=Path, metavar="FILE.keras",
                        help="the CAE encoder .keras file (train-cae writes models/cae/encoder.keras)")
    encode.add_argument("--csv", type=Path, metavar="FILE",
                        help="write the CSV to FILE instead of stdout")
    encode.add_argument("--force", action="store_true", help="replace the --csv FILE if it exists")
    encode.set_defaults(run=run_encode)

    from fcnlab.seg.export import FORMATS, PARITY_TOLERANCE   # no TensorFlow import: cheap

    export = commands.add_parser(
        "export", help="the FCN as TensorFlow SavedModel, TFLite and ONNX files",
        description=EXPORT_DESCRIPTION % {"tolerance": PARITY_TOLERANCE}, epilog=EXPORT_EPILOG,
        formatter_class=formatter)
    export.add_argument("--model", required=True, type=Path, metavar="FILE.keras",
                        help="the FCN .keras file (train-fcn writes models/fcn/fcn8s_vgg16.keras)")
    export.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder for the exported files (created if needed)")
    export.add_argument("--formats", type=_formats, default=FORMATS, metavar="LIST",
                        help=f"comma-separated, from {','.join(FORMATS)} (default: all)")
    export.add_argument("--image-size", type=_image_side, default=None, metavar="N",
                        help="fix height and width to N px, a multiple of 32 (default: any size)")
    export.add_argument("--force", action="store_true", help="replace exported files already in DIR")
    export.set_defaults(run=run_export)

    report = commands.add_parser(
        "report", help="one offline HTML page of dvc.yaml's plots and metrics",
        description=REPORT_DESCRIPTION, epilog=REPORT_EPILOG, formatter_class=formatter)
    report.add_argument("--out", required=True, type=_html_path, metavar="FILE.html",
                        help="the HTML file to write")
    report.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"), metavar="FILE",
                        help="the pipeline file; paths in it are relative to its folder "
                             "(default: dvc.yaml)")
    report.add_argument("--force", action="store_true", help="replace FILE.html if it exists")
    report.set_defaults(run=run_report)
    return parser


# --- Commands -----------------------------------------------------------------------------------


def run_segment(args) -> int:
    _refuse_shared_stems(args.images)
    _refuse_existing_outputs([args.out / f"{path.stem}_{kind}.png" for path in args.images
                              for kind in ("mask", "overlay")], args.force)
    quiet_tensorflow()
    from fcnlab.core.io import save_png
    from fcnlab.core.io import load_model
    from fcnlab.seg import segment
    from fcnlab.seg.model import check_segmentation_model
    from fcnlab.seg.speedups import emulated_bfloat16_warning, resolve_precision

    args.precision = resolve_precision(args.precision)
    if warning := emulated_bfloat16_warning(args.precision, "segment", "--precision"):
        _say(warning, sys.stderr)
    model = load_model(args.model, check=check_segmentation_model)
    geometry = None if args.native else _training_geometry(args.model)
    _make_folder(args.out)

    progress = _Progress(len(args.images), "segment")
    fractions, failed = [], 0
    for result in segment.segment_files(model, args.images, geometry, args.precision):
        if result.error is not None:
            failed += 1
            progress.fail(result.path, result.error)
            continue
        mask = segment.foreground_mask(result.fg_probs, args.threshold)                # H x W {0, 1}
        stem = result.path.stem
        try:
            save_png(args.out / f"{stem}_mask.png", segment.mask_image(mask), overwrite=args.force)
            save_png(args.out / f"{stem}_overlay.png", segment.overlay_image(result.image, mask),
                     overwrite=args.force)
        except FcnlabError as err:
            failed += 1
            progress.fail(result.path, err)
            continue
        except OSError as err:
            failed += 1
            progress.fail(result.path, f"{args.out}: could not write the outputs of "
                                       f"{result.path.name} ({err})")
            continue
        fractions.append(float(mask.mean()))
        progress.done(result.path, f"foreground {mask.mean():.1%}")
    progress.finish()

    mean = f"{sum(fractions) / len(fractions):.3f}" if fractions else "n/a"
    _say(f"segment: {len(fractions)} ok, {failed} failed; mean foreground fraction {mean} "
         f"(threshold {args.threshold}); masks and overlays in {args.out}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def run_decode(args) -> int:
    _refuse_existing_outputs([args.out], args.force)
    quiet_tensorflow()
    from fcnlab.cae.digit_files import decoded_digit_image
    from fcnlab.cae.latent import check_decoder_model
    from fcnlab.core.io import save_png
    from fcnlab.core.io import load_model

    decoder = load_model(args.decoder, check=check_decoder_model)
    pixels = decoded_digit_image(decoder, args.z1, args.z2, scale=args.scale)
    try:
        save_png(args.out, pixels, overwrite=args.force)
    except OSError as err:
        raise OutputNotWritten(f"{args.out}: could not write it ({err}); choose another --out") from None
    _say(f"decode: ({args.z1:g}, {args.z2:g}) -> {args.out} ({pixels.shape[1]} x {pixels.shape[0]} px)")
    return EXIT_OK


def run_encode(args) -> int:
    if args.csv is not None:
        _refuse_existing_outputs([args.csv], args.force)
    quiet_tensorflow()
    import numpy as np

    from fcnlab.cae.digit_files import digit_image_for_encoder, looks_inverted
    from fcnlab.cae.latent import check_encoder_model, encode
    from fcnlab.core.io import load_model, save_text

    encoder = load_model(args.encoder, check=check_encoder_model)
    paths, digits, failed = [], [], 0
    for path in args.images:
        try:
            digit = digit_image_for_encoder(path)                      # 28 x 28 x 1
        except FcnlabError as err:
            failed += 1
            _say(f"error: {_one_line(err)}", sys.stderr)
            continue
        if looks_inverted(digit):
            _say(f"warning: {path}: mostly bright; MNIST digits are white on black, so a dark digit "
                 "on a light background encodes far from the training digits (invert it first)",
                 sys.stderr)
        paths.append(path)
        digits.append(digit)
    latents = encode(encoder, np.stack(digits)) if digits else np.zeros((0, 2))   # N x 2

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "z1", "z2"])
    # 9 significant digits give back every float32 exactly.
    writer.writerows([_csv_text(path), f"{z1:.9g}", f"{z2:.9g}"] for path, (z1, z2) in zip(paths, latents))
    if args.csv is None:
        sys.stdout.write(text.getvalue())
    else:
        try:
            save_text(args.csv, text.getvalue(), overwrite=args.force)
        except OSError as err:
            raise OutputNotWritten(f"{args.csv}: could not write it ({err}); choose another --csv") from None
    where = "" if args.csv is None else f" to {args.csv}"
    _say(f"encode: {len(paths)} ok, {failed} failed; wrote {len(paths)} rows{where}", sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def run_export(args) -> int:
    from fcnlab.seg import export

    export.check_packages(args.formats)
    _refuse_existing_outputs([export.artifact_path(args.out, args.model.stem, fmt) for fmt in args.formats],
                             args.force)
    quiet_tensorflow()
    from fcnlab.core.io import load_model
    from fcnlab.seg.model import check_segmentation_model

    model = load_model(args.model, check=check_segmentation_model)
    _make_folder(args.out)
    try:
        paths = export.export_model(model, args.out, args.model.stem, args.formats, args.image_size)
    except ValueError as err:
        raise FcnlabError(f"{args.model}: {err}; choose another --image-size") from None
    except OSError as err:
        raise OutputNotWritten(f"{args.out}: could not write the exported files ({err}); "
                          "choose another --out") from None

    images = export.check_images(model, args.image_size)                          # 1 x H x W x 3
    failed = 0
    for fmt, path in paths.items():
        difference = export.max_difference(model, path, images)
        if difference > export.PARITY_TOLERANCE:
            failed += 1
            _say(f"error: {path}: its probabilities differ from {args.model}'s by up to "
                 f"{difference:.2g} (more than {export.PARITY_TOLERANCE:g}); do not use it", sys.stderr)
        else:
            _say(f"export: {fmt}: {path} (max probability difference from the .keras model "
                 f"{difference:.1g})")
    size = f"{args.image_size} x {args.image_size}" if args.image_size else "any multiple of 32"
    _say(f"export: {len(paths) - failed} ok, {failed} failed; input float32 RGB 0..255, "
         f"(batch, H, W, 3) with H x W {size}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def run_report(args) -> int:
    from fcnlab.report import write_report

    _refuse_existing_outputs([args.out], args.force)
    try:
        summary = write_report(args.dvc_yaml, args.out, overwrite=args.force)
    except ValueError as err:
        raise FcnlabError(f"{args.dvc_yaml}: {err}; fix it as `dvc plots show` would need") from None
    except OSError as err:
        raise OutputNotWritten(f"{args.out}: could not write it ({err}); choose another --out") from None
    for missing in summary.missing:
        _say(f"report: missing {missing} (run its stage first: dvc repro)", sys.stderr)
    for unreadable in summary.unreadable:
        _say(f"report: unreadable {_one_line(unreadable)}", sys.stderr)
    _say(f"report: {summary.charts} charts, {summary.images} images, {summary.metrics_files} "
         f"metrics files, {len(summary.missing)} missing, {len(summary.unreadable)} unreadable -> {args.out}")
    return EXIT_OK


# --- Helpers ------------------------------------------------------------------------------------


def _training_geometry(model_path: Path) -> dict | None:
    """The geometry record beside the model, or None (with a note) where there is none."""
    from fcnlab.seg.arrays import load_geometry

    path = model_path.with_suffix(".geometry.json")
    if not path.is_file():
        _say(f"note: {path} not found; predicting at each image's own size (as --native)", sys.stderr)
        return None
    return load_geometry(path, fix="rerun train-fcn (dvc repro train-fcn), or pass --native")


class _Progress:
    """`[done/total] file: note` on stderr: one line per file, or one self-updating line with a
    bar when stderr is a terminal. Failures always get a line of their own, starting `error:`."""

    BAR_WIDTH = 24

    def __init__(self, total: int, command: str):
        self.total, self.command, self.count = total, command, 0
        self.live = sys.stderr.isatty()

    def done(self, path: Path, note: str) -> None:
        self.count += 1
        if self.live:
            filled = self.BAR_WIDTH * self.count // self.total
            bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
            sys.stderr.write(f"\r\033[K{self.command} [{bar}] {self.count}/{self.total} {_printable(path.name)}")
        else:
            sys.stderr.write(_printable(f"{self.command} [{self.count}/{self.total}] {path}: {note}") + "\n")
        sys.stderr.flush()

    def fail(self, path: Path, error) -> None:
        self.count += 1
        message = _one_line(error)
        if not message.startswith(_one_line(path)):
            message = f"{_one_line(path)}: {message}"
        clear_line = "\r\033[K" if self.live else ""
        sys.stderr.write(f"{clear_line}error: {message}\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.live and self.count:
            sys.stderr.write("\n")


def _one_line(error) -> str:
    """A message on one line, safe to print: whitespace collapsed, control characters escaped."""
    return _printable(" ".join(str(error).split()))


# C0/C1 controls (ESC starts terminal escape sequences), bidirectional overrides (which reorder
# what the terminal shows), and lone surrogates (bytes of a file name that are not UTF-8).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _printable(text: str) -> str:
    """`text` with each unprintable character as an escape: ESC -> \\x1b, a non-UTF-8 byte -> \\xff."""
    def escape(match):
        code = ord(match[0])
        if 0xDC80 <= code <= 0xDCFF:                    # os.fsdecode's stand-in for a raw byte
            code -= 0xDC00
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return _UNPRINTABLE.sub(escape, text)


def _say(text: str, stream=None) -> None:
    """Print one line with its control characters escaped (to stdout unless `stream`)."""
    print(_printable(text), file=stream or sys.stdout)


def _csv_text(path: Path) -> str:
    """A path as a CSV cell that no spreadsheet runs as a formula (OWASP's leading quote)."""
    text = _printable(str(path))
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def _refuse_shared_stems(paths: list[Path]) -> None:
    """Two inputs whose stems differ only in case write the same outputs on case-insensitive
    file systems (macOS, Windows), so they are refused everywhere."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = path.stem.casefold()
        if key in seen:
            raise FcnlabError(f"{seen[key]} and {path} share the name {path.stem!r} (letter case "
                              f"aside), so their {path.stem}_mask.png would overwrite each other; "
                              "segment them in two runs with different --out folders")
        seen[key] = path


def _refuse_existing_outputs(paths: list[Path], force: bool) -> None:
    """Before any work: FcnlabError naming the outputs that exist, unless --force."""
    from fcnlab.core.io import refuse_existing

    if force:
        return
    existing = [path for path in paths if os.path.lexists(path)]
    if len(existing) == 1:
        refuse_existing(existing[0])
    if existing:
        shown = ", ".join(str(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise FcnlabError(f"{shown}{more}: exist already; pass --force to replace them, or choose "
                          "another --out")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputNotWritten(f"{folder}: cannot create the output folder ({err}); "
                          "choose another --out") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _scale(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_SCALE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SCALE}, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _threshold(text: str) -> float:
    value = _finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _formats(text: str) -> tuple[str, ...]:
    from fcnlab.seg.export import check_formats

    try:
        return check_formats(word.strip() for word in text.split(",") if word.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _image_side(text: str) -> int:
    from fcnlab.seg.export import check_image_size

    value = _positive_int(text)
    try:
        check_image_size(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def _html_path(text: str) -> Path:
    if Path(text).suffix.lower() not in (".html", ".htm"):
        raise argparse.ArgumentTypeError(f"must be a .html file name, got {text!r}")
    return Path(text)


def _png_path(text: str) -> Path:
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"must be a .png file name, got {text!r}")
    return Path(text)


if __name__ == "__main__":
    sys.exit(main())
