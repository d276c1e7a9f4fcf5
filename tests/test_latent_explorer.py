"""The latent explorer page: self-contained, deterministic, and showing the right decode in a browser.

The browser tests drive Debian's headless Chromium (/usr/bin/chromium) through Playwright; they
are skipped, saying why, where either is missing. A screenshot of the page is saved under
pytest's tmp_path, and copied into $FCNLAB_ARTIFACTS when that is set.

Tolerance: the page shows the decode of the grid point *nearest* the pointer, stored as uint8.
So the image read back from the page must equal the decoder's output at that grid point to
within one grey level (1/255: half a level of rounding plus float noise between two decodes),
and that grid point lies within half a grid step of the clicked latent on each axis.
"""

import os
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS, playwright_sync_api
from fcnlab.cae.model import cae_decoder
from fcnlab.cae.latent import decode
from fcnlab.cae.explorer import explorer_grid, explorer_html, images_to_uint8

GRID_SIZE = 12
ONE_GREY_LEVEL = 1 / 255


@pytest.fixture(scope="module")
def decoder():
    """An untrained CAE decoder (fixed seed); its last bias is 0.5 so decodes sit inside [0, 1]."""
    keras.utils.set_random_seed(0)
    model = cae_decoder()
    model.get_layer("reconstruction").bias.assign(np.array([0.5], dtype=np.float32))
    return model


@pytest.fixture(scope="module")
def explorer(decoder):
    """Random test latents and labels, the explorer grid over them, and the page's HTML."""
    rng = np.random.default_rng(0)
    latents = rng.normal(scale=4.0, size=(150, 2))
    labels = rng.choice([1, 5, 6], size=150)
    z1, z2 = explorer_grid(latents, GRID_SIZE)
    images = decode(decoder, np.array([(a, b) for b in z2 for a in z1]))
    return {"latents": latents, "labels": labels, "z1": z1, "z2": z2, "images": images,
            "html": explorer_html(latents, labels, z1, z2, images)}


def test_page_references_no_external_resource(explorer):
    html = explorer["html"]
    for marker in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert marker not in html


def test_page_bytes_are_identical_across_builds(explorer):
    again = explorer_html(explorer["latents"], explorer["labels"], explorer["z1"], explorer["z2"],
                          explorer["images"].copy())
    assert again.encode() == explorer["html"].encode()
    assert explorer["html"].isascii()   # so the bytes do not depend on the locale's encoding


def test_grid_spans_the_latent_cloud_top_down(explorer):
    z1, z2, latents = explorer["z1"], explorer["z2"], explorer["latents"]
    assert len(z1) == len(z2) == GRID_SIZE
    assert np.all(np.diff(z1) > 0) and np.all(np.diff(z2) < 0)
    assert z1[0] < np.quantile(latents[:, 0], 0.01) and z1[-1] > np.quantile(latents[:, 0], 0.99)
    assert z2[-1] < np.quantile(latents[:, 1], 0.01) and z2[0] > np.quantile(latents[:, 1], 0.99)


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(explorer, tmp_path_factory):
    """The page opened from a file:// URL in headless Chromium, every request it makes recorded."""
    sync_api = playwright_sync_api()
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    path.write_text(explorer["html"])
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 620})
            requests = []
            tab.on("request", lambda request: requests.append(request.url))
            errors = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(path.as_uri())
            yield {"tab": tab, "url": path.as_uri(), "requests": requests, "errors": errors}
        finally:
            browser.close()


def click_latent(tab, z1, z2):
    """Click the scatter at latent (z1, z2), placed by the page's own window.latentToPixel."""
    x, y = tab.evaluate("([a, b]) => window.latentToPixel(a, b)", [z1, z2])
    tab.locator("#scatter").click(position={"x": x, "y": y})


def shown_image(tab) -> np.ndarray:
    """The 28 x 28 image drawn on the page, read back from the canvas (centre of each 28th)."""
    values = tab.evaluate("""() => {
        const canvas = document.getElementById("decoded"), cell = canvas.width / 28;
        const rgba = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const out = [];
        for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) {
            const k = 4 * (Math.floor((r + 0.5) * cell) * canvas.width + Math.floor((c + 0.5) * cell));
            out.push(rgba[k], rgba[k + 1], rgba[k + 2]);
        }
        return out;
    }""")
    rgb = np.array(values, dtype=np.float64).reshape(28, 28, 3)
    assert np.all(rgb == rgb[..., :1])          # grey: red = green = blue
    return rgb[..., 0] / 255


def shown_latent(tab) -> tuple[float, float]:
    match = re.fullmatch(r"z = \((\S+), (\S+)\)", tab.inner_text("#coords"))
    assert match, tab.inner_text("#coords")
    return float(match[1]), float(match[2])


def test_page_loads_without_errors_or_network_requests(page):
    assert page["errors"] == []
    assert page["requests"] == [page["url"]]


def test_hovering_shows_the_point_under_the_pointer_and_leaving_restores_the_click(page, explorer):
    tab, z1, z2 = page["tab"], explorer["z1"], explorer["z2"]
    click_latent(tab, z1[1], z2[1])
    x, y = tab.evaluate("([a, b]) => window.latentToPixel(a, b)", [z1[7], z2[4]])
    box = tab.locator("#scatter").bounding_box()
    tab.mouse.move(box["x"] + x, box["y"] + y)
    assert tab.inner_text("#mode") == "pointer"
    assert tab.inner_text("#cell").startswith("nearest grid point [7, 4]")
    tab.mouse.move(box["x"] + box["width"] + 50, box["y"])       # off the plot
    assert tab.inner_text("#mode") == "clicked point"
    assert tab.inner_text("#cell").startswith("nearest grid point [1, 1]")


def test_clicking_shows_the_decoded_image_and_coordinates(page, explorer, decoder, tmp_path):
    tab, z1, z2 = page["tab"], explorer["z1"], explorer["z2"]
    step1, step2 = z1[1] - z1[0], z2[0] - z2[1]
    # Off-centre in their cells, so the page must pick the nearest grid point, not just any.
    for i, j, offset in [(3, 8, 0.3), (9, 2, -0.35)]:
        clicked = (z1[i] + offset * step1, z2[j] - offset * step2)
        click_latent(tab, *clicked)

        # Coordinates: the text shows the clicked latent (to 3 decimals, within a pixel).
        pixel_in_latent = max(step1, step2) * GRID_SIZE / 420
        assert np.allclose(shown_latent(tab), clicked, atol=pixel_in_latent + 0.0005)
        assert tab.inner_text("#mode") == "clicked point"
        assert tab.inner_text("#cell").startswith(f"nearest grid point [{i}, {j}]")

        # Image: the decoder's output at the nearest grid point, to one grey level.
        nearest = np.array([[z1[np.argmin(np.abs(z1 - clicked[0]))], z2[np.argmin(np.abs(z2 - clicked[1]))]]])
        assert np.allclose(nearest, [[z1[i], z2[j]]])
        expected = np.clip(decode(decoder, nearest)[0], 0, 1)
        shown = shown_image(tab)
        assert np.abs(shown - expected).max() <= ONE_GREY_LEVEL + 1e-9
        # ... and the neighbouring grid point's image would have failed that check.
        neighbour = images_to_uint8(explorer["images"]).reshape(GRID_SIZE, GRID_SIZE, 28, 28)[j, i + 1] / 255
        assert np.abs(shown - neighbour).max() > ONE_GREY_LEVEL

    screenshot = tmp_path / "latent_explorer.png"
    tab.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0
    if os.environ.get("FCNLAB_ARTIFACTS"):
        target = Path(os.environ["FCNLAB_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)
