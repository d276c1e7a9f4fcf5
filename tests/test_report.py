"""The offline report: one HTML file holding every plot and metric a dvc.yaml declares.

A small pipeline is faked in tmp_path: a dvc.yaml in the project's own style (every plot form
DVC accepts that the project uses, plus JSON data, a confusion plot and missing files) beside
TSV, CSV, JSON and PNG files written here. The page is checked as text, then opened in
headless Chromium with every request that is not file:// or data: aborted.
"""

import base64
import html
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import CHROMIUM, CHROMIUM_ARGS, playwright_sync_api
from fcnlab.cli import main
from fcnlab.report import write_report

IOU = {"img-a": 0.61, "img-b": 0.12, "img-c": 0.93, "img-d": 0.45}

DVC_YAML = {
    "stages": {
        "train": {"cmd": "python train.py", "metrics": ["reports/train/metrics.json"]},
        "evaluate": {"cmd": "python evaluate.py",
                     "metrics": [{"reports/evaluate/metrics.json": {"cache": False}}]},
        "never-run": {"cmd": "python other.py", "metrics": ["reports/never_run/metrics.json"],
                      "plots": [{"reports/never_run/history.csv": {"x": "epoch", "y": "loss", "cache": False}}]},
    },
    "plots": [
        {"Loss per epoch": {"template": "linear", "x": "step",
                            "y": {"reports/train/live/train/loss.tsv": "loss",
                                  "reports/train/live/eval/loss.tsv": "loss"}}},
        {"Latent space": {"template": "scatter", "x": "z1", "y": {"reports/latent.csv": "z2"}}},
        {"IoU against the threshold": {"x": "threshold",
                                       "y": {"reports/evaluate/curve.csv": ["mean_iou", "foreground_iou"]}}},
        {"IoU per image": {"template": "bar_horizontal_sorted", "x": "iou",
                           "y": {"reports/evaluate/per_image.csv": "name"}}},
        {"reports/evaluate/accuracy.json": {"x": "epoch", "y": "accuracy", "title": "Accuracy (JSON)"}},
        {"Confusion": {"template": "confusion", "x": "actual", "y": {"reports/evaluate/classes.csv": "predicted"}}},
        "reports/train/live/train/loss.tsv",
        "reports/figure.png",
        "reports/overlays",
        "reports/not_made_yet.png",
        {"Not made yet": {"x": "step", "y": {"reports/never_run/curve.tsv": "value"}}},
    ],
}
DATA_CHARTS = 7          # the data plots above whose files exist
IMAGES = 3               # figure.png and the two PNGs in overlays/


def write_png(path: Path, seed: int, size=(40, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    files = {
        "reports/train/live/train/loss.tsv": "step\tloss\n0\t0.9\n1\t0.5\n2\t0.3\n",
        "reports/train/live/eval/loss.tsv": "step\tloss\n0\t1.0\n1\t0.7\n2\t0.6\n",
        "reports/latent.csv": "z1,z2,digit\n" + "".join(f"{i / 3:.3f},{(i % 5) - 2},{i % 3}\n" for i in range(40)),
        "reports/evaluate/curve.csv": "threshold,mean_iou,foreground_iou\n0.0,0.4,0.2\n0.5,0.7,0.6\n1.0,0.45,0.0\n",
        "reports/evaluate/per_image.csv": "name,iou\n" + "".join(f"{k},{v}\n" for k, v in IOU.items()),
        "reports/evaluate/accuracy.json": '[{"epoch": 1, "accuracy": 0.8}, {"epoch": 2, "accuracy": 0.9}]',
        "reports/evaluate/classes.csv": "actual,predicted\ncat,cat\ncat,dog\ndog,dog\nbird,dog\n",
        "reports/train/metrics.json": '{"test": {"mse": 0.038742, "psnr_db": 14.1182}, "epochs": 10}',
        "reports/evaluate/metrics.json": '{"mean_iou": 0.6953, "confusion": [[1, 2], [3, 4]], "source": "demo"}',
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    write_png(root / "reports/figure.png", seed=0)
    write_png(root / "reports/overlays/best.png", seed=1, size=(64, 32))
    write_png(root / "reports/overlays/worst.png", seed=2, size=(64, 32))
    return root


@pytest.fixture(scope="module")
def report(project):
    summary = write_report(project / "dvc.yaml", project / "out" / "report.html")
    return {"summary": summary, "path": project / "out" / "report.html",
            "html": (project / "out" / "report.html").read_text()}


def test_every_plot_and_metrics_file_is_counted(report):
    summary = report["summary"]
    assert (summary.charts, summary.images, summary.metrics_files) == (DATA_CHARTS, IMAGES, 2)
    assert summary.unreadable == []


def test_missing_files_are_listed_not_fatal(report):
    assert sorted(report["summary"].missing) == ["reports/never_run/curve.tsv", "reports/never_run/history.csv",
                                                 "reports/never_run/metrics.json", "reports/not_made_yet.png"]
    listed = re.search(r'<ul class="missing" id="missing">(.*?)</ul>', report["html"]).group(1)
    for name in report["summary"].missing:
        assert f"<code>{name}</code>" in listed


def test_the_page_references_nothing_outside_itself(report):
    page = report["html"]
    for marker in ("http://", "https://", "<script", "<link", "@import", "@font-face", "//cdn"):
        assert marker not in page
    assert re.findall(r"url\((?!#)", page) == []          # only references to its own SVG parts
    assert re.findall(r'src="(?!data:)', page) == []


def test_images_are_embedded_byte_for_byte(report, project):
    for name in ("reports/figure.png", "reports/overlays/best.png", "reports/overlays/worst.png"):
        encoded = base64.b64encode((project / name).read_bytes()).decode("ascii")
        assert f'src="data:image/png;base64,{encoded}"' in report["html"]


def test_charts_are_inline_svg_with_their_series_labels(report):
    page = report["html"]
    assert page.count("<svg ") == DATA_CHARTS
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", page)
    assert "train/loss.tsv: loss" in " ".join(texts) and "eval/loss.tsv: loss" in " ".join(texts)
    assert {"mean_iou", "foreground_iou", "z1", "z2", "epoch", "actual", "predicted"} <= set(texts)


def test_sorted_bars_go_from_the_smallest_to_the_largest(report):
    page = report["html"]
    order = [text for text in re.findall(r"<text[^>]*>([^<]*)</text>", page) if text in IOU]
    assert order == sorted(IOU, key=IOU.get)


def test_a_data_file_without_x_uses_the_row_number_and_last_column(report):
    section = re.search(r'<section class="chart" id="plot-7">(.*?)</section>', report["html"], re.S).group(1)
    assert "reports/train/live/train/loss.tsv" in section
    assert {"step", "loss"} <= set(re.findall(r"<text[^>]*>([^<]*)</text>", section))


def test_metrics_are_flattened_into_tables(report):
    page = report["html"]
    assert '<td>test.mse</td><td class="number">0.038742</td>' in page
    assert '<td>epochs</td><td class="number">10</td>' in page
    assert "<td>confusion</td><td>[[1, 2], [3, 4]]</td>" in page
    assert "<td>source</td><td>demo</td>" in page


def test_element_ids_are_unique_across_charts(report):
    ids = re.findall(r' id="([^"]+)"', report["html"])
    assert len(ids) == len(set(ids)) > 0


def test_the_same_files_give_the_same_bytes(report, project, tmp_path):
    write_report(project / "dvc.yaml", tmp_path / "again.html")
    assert (tmp_path / "again.html").read_bytes() == report["path"].read_bytes()


def test_a_column_that_is_not_there_is_reported_in_the_page(project, tmp_path):
    broken = {"plots": [{"Bad": {"x": "step", "y": {"reports/train/live/train/loss.tsv": "accuracy"}}}]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(broken))
    shutil.copytree(project / "reports", tmp_path / "reports")
    summary = write_report(tmp_path / "dvc.yaml", tmp_path / "report.html")
    assert summary.charts == 0 and len(summary.unreadable) == 1
    assert "no column 'accuracy'" in html.unescape((tmp_path / "report.html").read_text())


def test_a_malformed_plots_entry_is_refused_with_its_value(tmp_path, capsys):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": [["a.csv", "b.csv"]]}))
    status = main(["report", "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--out", str(tmp_path / "r.html")])
    assert status == 2
    assert "plots: each entry must be a path or a one-key mapping, got ['a.csv', 'b.csv']" in capsys.readouterr().err


# --- The command line ---------------------------------------------------------------------------


def test_cli_writes_the_report_and_names_what_is_missing(project, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", "--dvc-yaml", str(project / "dvc.yaml"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"report: {DATA_CHARTS} charts, {IMAGES} images, 2 metrics files, 4 missing, 0 unreadable -> {out}" in captured.out
    assert "report: missing reports/not_made_yet.png (run its stage first: dvc repro)" in captured.err
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_cli_refuses_a_missing_dvc_yaml_in_one_line(tmp_path, capsys):
    status = main(["report", "--dvc-yaml", str(tmp_path / "dvc.yaml"), "--out", str(tmp_path / "r.html")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "file not found" in err
    assert not (tmp_path / "r.html").exists()


# --- In a browser with the network cut off -------------------------------------------------------


def test_the_page_renders_every_chart_and_image_offline(report, tmp_path):
    sync_api = playwright_sync_api()
    requests, blocked, failed, errors = [], [], [], []

    def only_local(route):
        url = route.request.url
        if url.startswith(("file://", "data:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.route("**/*", only_local)
            tab.on("request", lambda request: requests.append(request.url))
            tab.on("requestfailed", lambda request: failed.append(request.url))
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            tab.goto(report["path"].as_uri(), wait_until="load", timeout=30_000)
            charts = tab.evaluate("""() => [...document.querySelectorAll("figure > svg")].map(svg => {
                const box = svg.getBoundingClientRect();
                return [box.width, box.height, svg.querySelectorAll("path, use, text").length];
            })""")
            images = tab.evaluate("""() => [...document.images].map(
                img => [img.complete, img.naturalWidth, img.naturalHeight])""")
            screenshot = tmp_path / "report.png"
            tab.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert blocked == [] and failed == [] and errors == []
    assert requests == [report["path"].as_uri()] + [u for u in requests[1:] if u.startswith("data:")]
    assert len(charts) == DATA_CHARTS
    assert all(width > 100 and height > 50 and shapes > 10 for width, height, shapes in charts)
    assert sorted(images) == sorted([[True, 40, 24], [True, 64, 32], [True, 64, 32]])
    if os.environ.get("FCNLAB_ARTIFACTS"):
        target = Path(os.environ["FCNLAB_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / "report.png")
