"""Integration: the real `dvc` and `git` in a temporary repo, on tiny params, offline.

The tests run in file order and share one repo, like a user's session: a first `dvc repro`,
then no-op and forced reruns, param changes, a module edit, experiments, a queued sweep, data
versioning through a remote and a fresh clone, and the HTML report.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import yaml

from conftest import CHROMIUM, CHROMIUM_ARGS, playwright_sync_api
from pipeline_repo import PipelineRepo

pytestmark = pytest.mark.integration

CAE_STAGES = ["prepare-mnist-subset", "train-cae", "plot-latent"]
FCN_STAGES = ["prepare-seg", "train-fcn", "evaluate-iou", "render-overlays"]
ALL_STAGES = CAE_STAGES + FCN_STAGES


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = PipelineRepo.create(tmp_path_factory.mktemp("pipeline") / "project")
    repo.first_run = repo.dvc("repro")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "first run")
    return repo


def json_of(path):
    return json.loads(path.read_text())


# --- 1. The pipeline runs, and caching holds ------------------------------------------------------


def test_first_repro_runs_every_stage(repo):
    assert sorted(repo.stages_run(repo.first_run)) == sorted(ALL_STAGES)


def test_cae_outputs_and_metrics(repo):
    for path in ("models/cae/encoder.keras", "models/cae/decoder.keras", "reports/train_cae/reconstructions.png",
                 "reports/plot_latent/manifold.png", "reports/plot_latent/decoded_points.png",
                 "reports/plot_latent/explorer.html", "reports/train_cae/live/plots/metrics/eval/loss.tsv"):
        assert (repo.path / path).stat().st_size > 0, path
    summary = json_of(repo.path / "reports/prepare_mnist_subset/summary.json")
    assert summary["counts"]["train"] == {"1": 400, "5": 400, "6": 400, "all": 1200}
    metrics = json_of(repo.path / "reports/train_cae/metrics.json")
    assert 0 < metrics["test_mse"] < 0.1 and metrics["psnr_db"] > 10
    details = json_of(repo.path / "reports/train_cae/details.json")
    assert details["test"]["mse"] == metrics["test_mse"] and set(details) == {"train", "test"}
    latent = json_of(repo.path / "reports/plot_latent/metrics.json")
    assert latent["knn_acc"] > 1 / 3
    assert len(json_of(repo.path / "reports/plot_latent/details.json")["decoded_points"]) == 3
    loss_curve = (repo.path / "reports/train_cae/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_curve[0] == "step\tloss" and len(loss_curve) == 1 + 2


def test_fcn_outputs_and_metrics(repo):
    summary = json_of(repo.path / "reports/prepare_seg/summary.json")
    assert [summary[s]["count"] for s in ("train", "val", "test")] == [12, 4, 6]
    assert summary["source"] == "demo" and summary["resize"] == "square" and summary["image_size"] == 64
    assert summary["train"]["height_px"] == summary["train"]["width_px"] == [64, 64]
    prepared = sorted(p.name for p in (repo.path / "data/prepared/seg").iterdir())
    assert prepared == ["geometry.json"] + sorted(f"{split}-00000-of-00001_{kind}.npy"   # one shard each
                                                  for split in ("test", "train", "val")
                                                  for kind in ("images", "masks", "shapes"))
    geometry = json_of(repo.path / "models/fcn/fcn8s_vgg16.geometry.json")
    assert geometry == {"resize": "square", "image_size": 64, "patch_size": None}

    headline = json_of(repo.path / "reports/train_fcn/metrics.json")
    trained = json_of(repo.path / "reports/train_fcn/details.json")
    assert trained["epochs_run"] == 2 and 1 <= trained["kept_epoch"] <= 2
    assert headline == {"val_miou": trained["best_val_mean_iou"], "kept_epoch": trained["kept_epoch"]}
    assert 0 < trained["trainable_parameters"] <= trained["parameters"]
    epochs = (repo.path / "reports/train_fcn/epochs.csv").read_text().splitlines()
    header, rows = epochs[0].split(","), [dict(zip(epochs[0].split(","), line.split(","))) for line in epochs[1:]]
    assert header[0] == "epoch" and {"loss", "val_mean_iou", "kept"} <= set(header) and len(rows) == 2
    assert [int(row["epoch"]) for row in rows if row["kept"] == "1"] == [trained["kept_epoch"]]
    best = max(float(row["val_mean_iou"]) for row in rows)           # keep_best: the kept epoch is the best
    assert float(rows[trained["kept_epoch"] - 1]["val_mean_iou"]) == best
    assert trained["best_val_mean_iou"] == pytest.approx(best, abs=1e-6)

    evaluated = json_of(repo.path / "reports/evaluate_iou/details.json")
    assert evaluated["n_test_images"] == 6
    assert 0 <= evaluated["model"]["mean_iou"] <= 1
    assert set(evaluated["baselines"]) == {"all_background", "all_foreground", "intensity_threshold"}
    assert isinstance(evaluated["beats_baselines"], bool)
    assert ("warning: evaluate-iou" in repo.first_run) == (not evaluated["beats_baselines"])
    headline = json_of(repo.path / "reports/evaluate_iou/metrics.json")
    assert headline["miou"] == evaluated["model"]["mean_iou"]
    assert headline["learned"] == evaluated["beats_baselines"]
    assert headline["base_miou"] == max(b["mean_iou"] for b in evaluated["baselines"].values())
    predictions = sorted(p.name for p in (repo.path / "data/predictions/fcn_test").iterdir())
    assert predictions == ["test_fg_probs.npy", "test_shapes.npy"]
    per_image = (repo.path / "reports/evaluate_iou/per_image.csv").read_text().splitlines()
    assert per_image[0] == "index,iou,dice,foreground_fraction" and len(per_image) == 1 + 6
    curve = (repo.path / "reports/evaluate_iou/iou_vs_threshold.csv").read_text().splitlines()
    assert curve[0] == "threshold,mean_iou,foreground_iou" and len(curve) == 1 + 5
    figures = sorted(p.name for p in (repo.path / "reports/render_overlays").iterdir())
    assert figures == ["best_by_iou.png", "example_0.png", "example_1.png", "worst_by_iou.png"]
    assert (repo.path / "models/fcn/fcn8s_vgg16.keras").stat().st_size > 0


def test_metrics_show_lists_every_metrics_file_and_no_details(repo):
    shown = repo.dvc("metrics", "show", "--json")
    for name in ("train_cae/metrics.json", "plot_latent/metrics.json", "train_fcn/metrics.json",
                 "evaluate_iou/metrics.json"):
        assert name in shown
    for name in ("details.json", "summary.json"):                     # plain outputs, not headline metrics
        assert name not in shown


def test_second_repro_reruns_nothing_in_seconds(repo):
    before = repo.output_hashes()
    start = time.perf_counter()
    output = repo.dvc("repro")
    print(f"no-op dvc repro: {time.perf_counter() - start:.1f} s")
    assert repo.stages_run(output) == []
    assert "Data and pipelines are up to date." in output
    assert repo.output_hashes() == before


def test_forced_rerun_gives_byte_identical_outputs(repo):
    before = repo.output_hashes()
    output = repo.dvc("repro", "--force")
    assert sorted(repo.stages_run(output)) == sorted(ALL_STAGES)
    assert repo.output_hashes() == before
    assert repo.git("status", "--porcelain") == ""        # dvc.lock unchanged too


def test_killed_training_leaves_nothing_half_written_and_reruns_cleanly(repo):
    """SIGKILL `dvc repro` while train-fcn is inside its first epoch, then repro again."""
    before = repo.output_hashes()
    process = repo.start_dvc("repro", "--force", "--single-item", "train-fcn")
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("train-fcn: epoch 1/"):
                break
        assert lines and lines[-1].startswith("train-fcn: epoch 1/"), "".join(lines)
    finally:
        repo.kill(process)
    assert not (repo.path / "models/fcn/fcn8s_vgg16.keras").exists()        # DVC removed it; no partial file
    assert not list((repo.path / "models/fcn").glob(".*tmp*"))
    assert "train-fcn" in repo.dvc("status")
    # dvc.lock still describes the last complete run, so DVC brings that back from its cache...
    output = repo.dvc("repro")
    assert "Stage 'train-fcn' is cached - skipping run, checking out outputs" in output
    assert repo.output_hashes() == before
    # ...and training again from scratch gives the same bytes as the uninterrupted run.
    output = repo.dvc("repro", "--force", "--single-item", "train-fcn")
    assert repo.stages_run(output) == ["train-fcn"]
    assert repo.output_hashes() == before


# --- 2. A change reruns exactly the stages that depend on it ---------------------------------------


@pytest.mark.parametrize("change, expected", [
    ({"cae": {"epochs": 1}}, ["train-cae", "plot-latent"]),
    ({"latent": {"knn_k": 3}}, ["plot-latent"]),
    ({"evaluate": {"n_thresholds": 3}}, ["evaluate-iou"]),
    ({"evaluate": {"baseline_margin": 0.05}}, ["evaluate-iou"]),
    ({"evaluate": {"threshold": 0.4}}, ["evaluate-iou", "render-overlays"]),   # not train-fcn: its val IoU is at 0.5
    ({"overlays": {"n_best_worst": 1}}, ["render-overlays"]),
])
def test_a_param_change_reruns_exactly_its_stages(repo, change, expected):
    repo.update_params(change)
    assert repo.stages_run(repo.dvc("repro")) == expected
    repo.reset_to_head()
    assert "up to date" in repo.dvc("status")


@pytest.mark.parametrize("module, expected", [
    ("fcnlab/seg/metrics.py", ["train-fcn", "evaluate-iou", "render-overlays"]),   # validation IoU
    ("fcnlab/seg/demo_scenes.py", ["prepare-seg"]),
    ("fcnlab/seg/figures.py", ["render-overlays"]),
    ("fcnlab/seg/training.py", ["train-fcn"]),
    ("fcnlab/seg/predict.py", ["train-fcn", "evaluate-iou"]),
    ("fcnlab/seg/geometry.py", FCN_STAGES),
    ("fcnlab/seg/sources.py", ["prepare-seg"]),
    ("fcnlab/seg/augment.py", ["train-fcn"]),
    ("fcnlab/seg/callbacks.py", ["train-fcn"]),
    ("fcnlab/cae/model.py", ["train-cae"]),
    ("fcnlab/cae/explorer.html", ["plot-latent"]),
    ("fcnlab/core/io.py", ALL_STAGES),
])
def test_editing_a_module_outdates_exactly_the_stages_that_import_it(repo, module, expected):
    path = repo.path / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        changed = json.loads(repo.dvc("status", "--json"))
    finally:
        path.write_text(original)
    outdated = {stage for stage, reasons in changed.items()
                if any("changed deps" in r and module in r["changed deps"] for r in reasons if isinstance(r, dict))}
    assert outdated == set(expected)


# --- 3. Experiments -------------------------------------------------------------------------------


def test_exp_run_with_a_param_override_and_exp_show(repo):
    output = repo.dvc("exp", "run", "-n", "cae-three-epochs", "-S", "cae.epochs=3")
    assert repo.stages_run(output) == ["train-cae", "plot-latent"]
    shown = json.loads(repo.dvc("exp", "show", "--json"))
    text = json.dumps(shown)
    assert "cae-three-epochs" in text and '"epochs": 3' in text and "knn_acc" in text
    repo.reset_to_head()


def test_metrics_diff_between_experiments(repo):
    diff = json.loads(repo.dvc("metrics", "diff", "HEAD", "cae-three-epochs", "--json"))
    change = diff["reports/train_cae/metrics.json"]["test_mse"]
    assert change["old"] != change["new"] and change["diff"] == pytest.approx(change["new"] - change["old"])


def test_plots_diff_between_experiments_renders_both(repo, tmp_path):
    out = tmp_path / "diff"
    repo.dvc("plots", "diff", "HEAD", "cae-three-epochs", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "CAE loss (MSE) per epoch" in html and "cae-three-epochs" in html
    assert "reconstructions.png" in html


def test_queued_sweep_runs_with_two_workers(repo):
    for batch_size in (16, 64):
        repo.dvc("exp", "run", "--queue", "-n", f"sweep-bs{batch_size}", "-S", "cae.epochs=1",
                 "-S", f"cae.batch_size={batch_size}")
    repo.dvc("queue", "start", "-j", "2")
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            status = repo.dvc("queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(5)
    finally:
        repo.dvc("queue", "stop", check=False)
    assert "Failed" not in status, status
    shown = json.dumps(json.loads(repo.dvc("exp", "show", "--json")))
    assert "sweep-bs16" in shown and "sweep-bs64" in shown


def test_metrics_show_and_exp_show_fit_in_160_columns(repo):
    """After the experiments above (a param override and a two-run sweep), both tables a user
    reads first stay readable in a terminal: DVC users complain of 2,000-column ones."""
    repo.env["COLUMNS"] = "1000"              # exp show's table shrinks to the terminal: measure it whole
    # exp show also lists the hash of every dependency an experiment changed (here the models
    # that plot-latent reads): README shows `--drop 'data/|models/'` to hide those columns.
    try:
        for command in (["metrics", "show"],
                        ["exp", "show", "--only-changed", "--no-pager", "--drop", "data/|models/"]):
            shown = repo.dvc(*command)
            width = max(len(line) for line in shown.splitlines())
            print(f"dvc {' '.join(command)}: {width} columns\n{shown}")
            assert width <= 160, shown
    finally:
        del repo.env["COLUMNS"]
    assert "sweep-bs16" in shown and "cae.batch_size" in shown and "test_mse" in shown, shown


# --- 4. Data versioning: own data tracked with dvc add, shared through a remote -----------------


def test_own_data_with_dvc_add_push_clone_and_pull(repo, tmp_path):
    rng = np.random.default_rng(0)
    npz = repo.path / "data/raw/mnist/mnist.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), y_train=np.arange(60) % 10,
             x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), y_test=np.arange(20) % 10)
    repo.dvc("add", "data/raw/mnist/mnist.npz")
    repo.update_params({"mnist": {"source": "data/raw/mnist/mnist.npz"}})
    assert repo.stages_run(repo.dvc("repro")) == CAE_STAGES
    remote = tmp_path / "remote"
    repo.dvc("remote", "add", "-d", "team", str(remote))
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "own MNIST data, tracked by DVC")
    repo.dvc("push")

    clone = PipelineRepo.clone(repo, tmp_path / "clone")
    clone.dvc("pull")
    assert "Data and pipelines are up to date." in clone.dvc("status")
    assert clone.output_hashes() == repo.output_hashes()
    assert json.loads(clone.dvc("metrics", "show", "--json")) == json.loads(repo.dvc("metrics", "show", "--json"))


def test_dvc_artifacts_get_fetches_the_fcn_from_the_repo_and_its_remote(repo, tmp_path):
    """The models are registry artifacts: once a version is registered (a GTO git tag, as
    `gto register` writes it), `dvc artifacts get` finds the latest version by name in the repo
    and downloads the file from its DVC remote (set up and pushed by the previous test)."""
    listed = {name: spec for name, spec in repo.dvc_yaml_artifacts().items()}
    assert set(listed) == {"fcn8s-vgg16", "cae-encoder", "cae-decoder"}
    assert all(spec["type"] == "model" and spec["desc"] and spec["labels"] for spec in listed.values())
    repo.dvc("push")                                               # the FCN of the current commit
    repo.git("tag", "-a", "fcn8s-vgg16@v1.0.0", "-m", "Registering artifact fcn8s-vgg16 version v1.0.0")
    out = tmp_path / "fetched.keras"
    repo.dvc("artifacts", "get", str(repo.path), "fcn8s-vgg16", "-o", str(out))
    lock = yaml.safe_load(repo.git("show", "HEAD:dvc.lock"))
    committed = {o["path"]: o["md5"] for o in lock["stages"]["train-fcn"]["outs"]}
    assert hashlib.md5(out.read_bytes()).hexdigest() == committed["models/fcn/fcn8s_vgg16.keras"]


# --- 5. The report ----------------------------------------------------------------------------------


def test_plots_show_renders_every_curve_and_figure_into_one_report(repo, tmp_path):
    repo.dvc("plots", "show", "-o", str(tmp_path / "report"))
    html = (tmp_path / "report" / "index.html").read_text()
    import yaml
    declared = yaml.safe_load((repo.path / "dvc.yaml").read_text())["plots"]
    for plot in declared:
        name = plot if isinstance(plot, str) else next(iter(plot))
        assert name.split("/")[-1] in html, name
    for figure in ("best_by_iou.png", "worst_by_iou.png", "example_0.png"):
        assert figure in html


def test_report_renders_every_chart_and_image_in_chromium(repo, tmp_path):
    """Open `dvc plots show`'s page in headless Chromium. DVC's page loads Vega from a CDN, which
    this offline machine cannot reach, so the very versions it names are installed from the npm
    registry and served in the CDN's place; then every declared chart must draw and every image load."""
    sync_api = playwright_sync_api()
    report = tmp_path / "report"
    repo.dvc("plots", "show", "-o", str(report))
    html = (report / "index.html").read_text()
    libraries = dict(re.findall(r"https://cdn\.jsdelivr\.net/npm/(vega(?:-lite|-embed)?)@([\d.]+)", html))
    assert set(libraries) == {"vega", "vega-lite", "vega-embed"}
    npm = shutil.which("npm")
    if npm is None:
        assert not os.environ.get("CI"), ".ci/run must install npm"
        pytest.skip("npm is needed to fetch Vega from the npm registry")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--legacy-peer-deps", "--prefix",
                    str(tmp_path / "js"), *[f"{name}@{version}" for name, version in libraries.items()]],
                   check=True, capture_output=True, timeout=600)
    scripts = {name: tmp_path / "js/node_modules" / name / "build" / f"{name}.min.js" for name in libraries}

    charts = [p for p in repo.dvc_yaml_plots() if isinstance(p, dict)]
    images = [p for p in repo.dvc_yaml_plots() if isinstance(p, str)]
    n_image_files = sum(len(list((repo.path / p).iterdir())) if (repo.path / p).is_dir() else 1 for p in images)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            def serve_from_npm(route):
                name = re.search(r"/npm/(vega(?:-lite|-embed)?)@", route.request.url).group(1)
                route.fulfill(path=str(scripts[name]), content_type="application/javascript")

            page.route(re.compile(r"https://cdn\.jsdelivr\.net/npm/.*"), serve_from_npm)
            page.goto(report.joinpath("index.html").as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= {len(charts)}",
                timeout=60_000)
            loaded = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            if os.environ.get("FCNLAB_ARTIFACTS"):
                shutil.copy(tmp_path / "report.png", os.environ["FCNLAB_ARTIFACTS"])
        finally:
            browser.close()
    assert errors == []
    assert loaded == n_image_files
