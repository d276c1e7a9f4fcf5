"""Any image geometry, end to end: folders of random sizes through prepare-seg -> train-fcn (tiny)
-> evaluate-iou -> render-overlays -> `fcnlab segment` -> `fcnlab export`, under each resize
policy; every mask comes out at its own image's size.

The stage scripts' own `main` functions run in this process (as `python stages/<stage>.py` would
run them, without a new TensorFlow start per stage), on their real files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import ROOT
from fcnlab import cli
from fcnlab.core.errors import FcnlabError
from fcnlab.seg.arrays import load_test_predictions
from fcnlab.seg.geometry import training_scale_size
from fcnlab.seg.shards import load_prepared_split

pytestmark = pytest.mark.integration

N_IMAGES = 6                 # 2 train, 2 val, 2 test at the fractions below


def stage(name: str):
    """stages/<name>.py as a module (its `main(args)` is the stage)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STAGES = {name: stage(name) for name in ("prepare_seg", "train_fcn", "evaluate_iou", "render_overlays")}


def write_folder(folder, sizes, seed=0):
    """Images (bright rectangles on noise, RGB) and masks of the given (height, width) sizes."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index, (height, width) in enumerate(sizes):
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4:height // 4 + max(1, height // 2), width // 4:width // 4 + max(1, width // 2)] = 255
        image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8) + (mask[..., None] // 2)
        Image.fromarray(image).save(folder / "images" / f"{index:02d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{index:02d}.png")


def tiny_params(path, folder, resize: str, image_size: int, patch_size: int | None):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seg"].update(source="folder", path=str(folder), resize=resize, image_size=image_size,
                         val_fraction=0.34, test_fraction=0.34)
    params["fcn"].update(head_width=4, epochs=1, batch_size=2, patch_size=patch_size, steps_per_epoch=2)
    params["evaluate"].update(n_thresholds=3)
    params["overlays"].update(examples=[0], n_best_worst=2)
    path.write_text(yaml.safe_dump(params))
    return path


def run_pipeline(work, folder, resize: str, image_size: int, patch_size: int | None):
    """Every FCN stage and both FCN commands on `folder`; returns the paths they wrote."""
    params = str(tiny_params(work / "params.yaml", folder, resize, image_size, patch_size))
    out = {name: work / name for name in ("data", "model.keras", "model.geometry.json", "predictions",
                                          "figures", "segmented", "exported")}
    run = lambda name, **paths: STAGES[name].main(argparse.Namespace(params=params, **paths))   # noqa: E731
    run("prepare_seg", out=out["data"], summary=work / "prepare.json")
    run("train_fcn", data=out["data"], model=out["model.keras"], geometry=out["model.geometry.json"],
        live=work / "live", epochs=work / "epochs.csv", metrics=work / "train.json", details=work / "train_d.json")
    run("evaluate_iou", data=out["data"], model=out["model.keras"], predictions=out["predictions"],
        per_image=work / "per_image.csv", threshold_curve=work / "curve.csv", metrics=work / "eval.json",
        details=work / "eval_d.json")
    run("render_overlays", data=out["data"], predictions=out["predictions"], figures=out["figures"])
    images = sorted((folder / "images").iterdir())
    assert cli.main(["segment", *map(str, images), "--model", str(out["model.keras"]),
                     "--out", str(out["segmented"])]) == 0
    assert cli.main(["export", "--model", str(out["model.keras"]), "--out", str(out["exported"]),
                     "--formats", "savedmodel"]) == 0
    return out


def check_every_mask_at_its_images_size(out, folder, sizes, resize, image_size):
    test = load_prepared_split(out["data"], "test")
    for image, probs in zip(test.images, load_test_predictions(out["predictions"], test)):
        assert probs.shape == image.shape[:2]                                  # evaluate-iou
    scaled = {training_scale_size(h, w, resize, image_size) for h, w in sizes}
    assert {image.shape[:2] for image in test.images} <= scaled               # at the training scale
    for index, (height, width) in enumerate(sizes):                           # fcnlab segment
        mask = np.asarray(Image.open(out["segmented"] / f"{index:02d}_mask.png"))
        overlay = np.asarray(Image.open(out["segmented"] / f"{index:02d}_overlay.png"))
        assert mask.shape == (height, width) and overlay.shape[:2] == (height, width)
    assert (out["figures"] / "example_0.png").is_file() and (out["figures"] / "best_by_iou.png").is_file()
    assert (out["exported"] / "model_savedmodel").is_dir()


SIZES = st.integers(min_value=9, max_value=140)
GEOMETRIES = st.one_of(
    st.tuples(SIZES, SIZES).map(lambda size: [size] * N_IMAGES),                          # one odd size
    st.lists(st.tuples(SIZES, SIZES), min_size=N_IMAGES, max_size=N_IMAGES),              # mixed sizes
    st.tuples(st.integers(60, 140), st.integers(9, 50)).map(                             # portrait and landscape
        lambda hw: [hw if i % 2 else hw[::-1] for i in range(N_IMAGES)]),
)


@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sizes=GEOMETRIES, resize=st.sampled_from(["square", "keep_aspect", "none"]),
       image_size=st.sampled_from([32, 64, 96]), patch_size=st.sampled_from([None, 32, 64]))
@example(sizes=[(584, 565)] * N_IMAGES, resize="keep_aspect", image_size=160, patch_size=256)   # retinal
@example(sizes=[(333, 500)] * N_IMAGES, resize="keep_aspect", image_size=256, patch_size=256)   # 3:2 photos
@example(sizes=[(500, 333), (37, 41), (5, 120), (120, 5), (64, 64), (90, 17)], resize="none",
         image_size=64, patch_size=32)                                                           # tiny, thin
def test_every_stage_and_command_keeps_each_image_at_its_own_size(tmp_path_factory, sizes, resize, image_size,
                                                                   patch_size):
    work = tmp_path_factory.mktemp("geometry")
    write_folder(work / "folder", sizes)
    out = run_pipeline(work, work / "folder", resize, image_size, patch_size)
    check_every_mask_at_its_images_size(out, work / "folder", sizes, resize, image_size)
    trained = json.loads((work / "train_d.json").read_text())
    assert trained["epochs_run"] == 1


def test_an_image_whose_mask_has_another_size_is_refused_naming_both_files(tmp_path):
    write_folder(tmp_path / "folder", [(40, 50)] * N_IMAGES)
    Image.fromarray(np.zeros((50, 40), np.uint8)).save(tmp_path / "folder" / "masks" / "03.png")
    params = str(tiny_params(tmp_path / "params.yaml", tmp_path / "folder", "keep_aspect", 64, None))
    with pytest.raises(FcnlabError, match=r"03\.png.*(size|px)"):
        STAGES["prepare_seg"].main(argparse.Namespace(params=params, out=tmp_path / "data",
                                                      summary=tmp_path / "prepare.json"))
