"""Integration: the real `dvc repro` in a temporary git repo, on tiny params."""

import json

import pytest

from pipeline_repo import PipelineRepo

pytestmark = pytest.mark.integration

CAE_STAGES = ["prepare-mnist-subset", "train-cae", "plot-latent"]
FCN_STAGES = ["prepare-seg", "train-fcn", "evaluate-iou", "render-overlays"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = PipelineRepo.create(tmp_path_factory.mktemp("pipeline"))
    repo.first_run = repo.dvc("repro")
    return repo


def test_first_repro_runs_every_stage(repo):
    ran = repo.stages_run(repo.first_run)
    assert sorted(ran) == sorted(CAE_STAGES + FCN_STAGES)


def test_cae_outputs_and_metrics(repo):
    for path in ("models/cae/encoder.keras", "models/cae/decoder.keras", "reports/train_cae/reconstructions.png",
                 "reports/plot_latent/manifold.png", "reports/plot_latent/decoded_points.png",
                 "reports/train_cae/live/plots/metrics/eval/loss.tsv"):
        assert (repo.path / path).stat().st_size > 0, path
    summary = json.loads((repo.path / "reports/prepare_mnist_subset/summary.json").read_text())
    assert summary["counts"]["train"] == {"1": 400, "5": 400, "6": 400, "all": 1200}
    metrics = json.loads((repo.path / "reports/train_cae/metrics.json").read_text())
    assert 0 < metrics["test"]["mse"] < 0.1 and metrics["test"]["psnr_db"] > 10
    latent = json.loads((repo.path / "reports/plot_latent/metrics.json").read_text())
    assert latent["knn_accuracy"] > 1 / 3 and len(latent["decoded_points"]) == 3
    loss_curve = (repo.path / "reports/train_cae/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_curve[0] == "step\tloss" and len(loss_curve) == 1 + 2


def test_fcn_outputs_and_metrics(repo):
    summary = json.loads((repo.path / "reports/prepare_seg/summary.json").read_text())
    assert [summary[s]["count"] for s in ("train", "val", "test")] == [12, 4, 6]
    assert summary["image_size"] == 64
    trained = json.loads((repo.path / "reports/train_fcn/metrics.json").read_text())
    assert trained["encoder_weights"] == "none" and trained["head_width"] == 16
    evaluated = json.loads((repo.path / "reports/evaluate_iou/metrics.json").read_text())
    assert evaluated["n_test_images"] == 6
    assert 0 <= evaluated["model"]["mean_iou"] <= 1
    assert set(evaluated["baselines"]) == {"all_background", "all_foreground", "intensity_threshold"}
    per_image = (repo.path / "reports/evaluate_iou/per_image.csv").read_text().splitlines()
    assert per_image[0] == "index,iou,dice,foreground_fraction" and len(per_image) == 1 + 6
    curve = (repo.path / "reports/evaluate_iou/iou_vs_threshold.csv").read_text().splitlines()
    assert curve[0] == "threshold,mean_iou,foreground_iou" and len(curve) == 1 + 5
    figures = sorted(p.name for p in (repo.path / "reports/render_overlays").iterdir())
    assert figures == ["best_by_iou.png", "example_0.png", "example_1.png", "worst_by_iou.png"]
    assert (repo.path / "models/fcn/fcn8s_vgg16.keras").stat().st_size > 0


def test_metrics_show_lists_every_metrics_file(repo):
    shown = repo.dvc("metrics", "show", "--json")
    for name in ("prepare_mnist_subset/summary.json", "train_cae/metrics.json", "plot_latent/metrics.json",
                 "prepare_seg/summary.json", "train_fcn/metrics.json", "evaluate_iou/metrics.json"):
        assert name in shown


def test_second_repro_reruns_nothing(repo):
    before = repo.output_hashes()
    output = repo.dvc("repro")
    assert repo.stages_run(output) == []
    assert "Data and pipelines are up to date." in output
    assert repo.output_hashes() == before


def test_forced_rerun_gives_byte_identical_outputs(repo):
    before = repo.output_hashes()
    output = repo.dvc("repro", "--force")
    assert sorted(repo.stages_run(output)) == sorted(CAE_STAGES + FCN_STAGES)
    assert repo.output_hashes() == before


def test_changing_cae_epochs_reruns_train_cae_and_plot_latent_only(repo):
    repo.update_params({"cae": {"epochs": 1}})
    output = repo.dvc("repro")
    assert repo.stages_run(output) == ["train-cae", "plot-latent"]
