"""The feature viewer end to end: the real Snakefile builds the viewer data of
the session's shared tiny run, `saeflow view` serves it on 127.0.0.1, and the
tests use its JSON API over HTTP and its page in headless Chromium."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from viewer_harness import CHROMIUM, get, headless_chrome, serve_viewer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def viewer_run(tiny_run) -> Path:
    """The shared tiny run's results folder (its rule all builds the viewer)."""
    return tiny_run / "results"


@pytest.fixture(scope="module")
def server(viewer_run):
    """`saeflow view` on a free port; yields (host, port)."""
    with serve_viewer(viewer_run) as addr:
        yield addr


def test_meta_lists_models_layers_and_metrics(server):
    status, meta = get(server, "/api/meta")
    assert status == 200
    assert meta["models"] == ["base", "finetuned"] and meta["layers"] == [1, 2]
    assert {"mean_activation_domain", "specialization"} <= set(meta["metrics"])
    assert meta["parts"]["classifier"] is True


def test_headlines_page_with_predictions_and_chips(server, viewer_run):
    status, page = get(server, "/api/headlines?layer=2&limit=7&offset=3")
    assert status == 200
    assert page["total"] == 120 and len(page["items"]) == 7 and page["offset"] == 3
    for h in page["items"]:
        assert h["prediction"] in {"bearish", "bullish", "neutral"}
        assert h["correct"] == (h["prediction"] == h["label"])
        assert 1 <= len(h["features"]) <= 10
        acts = [f["act"] for f in h["features"]]
        assert acts == sorted(acts, reverse=True)
        # An unlabelled chip names the token the feature peaks on in this text.
        assert all(f["token"] and isinstance(f["token"], str) for f in h["features"])
    _, wrong = get(server, "/api/headlines?layer=2&only=wrong&limit=200")
    assert all(h["correct"] is False for h in wrong["items"])
    assert wrong["total"] == round((1 - page["accuracy"]) * 120)


def test_features_are_ranked_and_paged(server):
    path = "/api/features?model=finetuned&layer=1&metric=specialization"
    _, first = get(server, path + "&limit=5")
    _, second = get(server, path + "&limit=5&offset=5")
    _, both = get(server, path + "&limit=10")
    ids = [f["feature"] for f in first["items"] + second["items"]]
    assert ids == [f["feature"] for f in both["items"]]
    values = [f["specialization"] for f in both["items"]]
    assert values == sorted(values, reverse=True)
    assert first["total"] == 64  # tiny BERT: 32 wide × expansion 2
    _, capped = get(server, path + "&limit=100000")
    assert capped["limit"] == 200 and len(capped["items"]) == 64
    _, asc = get(server, path + "&limit=3&order=asc")
    assert asc["items"][0]["specialization"] <= values[-1]


def test_feature_info_histogram_counts_match_the_stats(server, viewer_run):
    status, info = get(server, "/api/feature_info?model=base&layer=2&id=3")
    assert status == 200 and info["id"] == 3 and info["stats"]["feature"] == 3
    with h5py.File(viewer_run / "activations/base/layer_2/domain.h5") as f:
        n_tokens = f["acts"].shape[0]
    hist = info["histogram"]
    active = info["stats"]["frac_active_domain"] * n_tokens
    assert sum(hist["domain"]) == pytest.approx(active, abs=0.5)
    assert len(hist["domain"]) == len(hist["general"]) == 24
    if info["parts"]["examples"]:
        tops = info["examples"]["top"]
        assert all(len(e["tokens"]) == len(e["acts"]) for e in tops)
    else:
        assert info["examples"] is None


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/feature_info?model=base&layer=2&id=-1", 400),
        ("/api/feature_info?model=base&layer=2&id=abc", 400),
        ("/api/feature_info?model=base&layer=2&id=1.5", 400),
        ("/api/feature_info?model=base&layer=2", 400),
        ("/api/feature_info?model=base&layer=2&id=64", 404),
        ("/api/feature_info?model=base&layer=2&id=99999999999", 400),
        ("/api/feature_info?model=nope&layer=2&id=1", 404),
        ("/api/feature_info?model=base&layer=7&id=1", 404),
        ("/api/feature_info?model=base&layer=two&id=1", 400),
        ("/api/features?model=base&layer=2&metric=bogus", 400),
        ("/api/features?model=base&layer=2&limit=-5", 400),
        ("/api/features?layer=2", 400),
        ("/api/headlines?layer=9", 404),
        ("/api/headlines?only=maybe", 400),
        ("/api/nothing", 404),
    ],
)
def test_bad_input_gets_a_json_error(server, path, status):
    got, body = get(server, path)
    assert got == status
    assert isinstance(body, dict) and body["error"] and "Traceback" not in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static//etc/passwd",
        "//etc/passwd",
        "/../../etc/passwd",
        "/api/feature_info?model=../../../../etc&layer=1&id=1",
        "/api/feature_info?model=%2e%2e%2f%2e%2e%2fetc&layer=1&id=1",
        "/api/feature_info?model=/etc/passwd&layer=1&id=1",
        "/api/features?model=base/../../sae&layer=1",
        "/static/viewer.js/../../viewer_store.py",
    ],
)
def test_no_path_outside_the_results_folder(server, path):
    status, body = get(server, path)
    assert status in (400, 404)
    text = json.dumps(body)
    assert "root:" not in text and "import" not in text


def test_read_only(server):
    status, body = get(server, "/api/features?model=base&layer=1", method="POST")
    assert status == 405 and "error" in body


def test_binds_loopback_only(server):
    ip = next(
        (
            a[4][0]
            for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            if not a[4][0].startswith("127.")
        ),
        None,
    )
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    with pytest.raises(OSError), socket.create_connection((ip, server[1]), timeout=3):
        pass


def test_view_without_viewer_data_says_how_to_build_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "saeflow.cli", "view", "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "results/viewer/manifest.json" in result.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_browser_headlines_chip_opens_feature(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chrome(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(f"http://{server[0]}:{server[1]}/")
        chips = wait.until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#hl-list .chip"))
        )
        verdicts = driver.find_elements(By.CSS_SELECTOR, ".headline .badge.right")
        assert verdicts, "no green (right) prediction badge"
        driver.find_element(By.ID, "tab-features").click()
        rows = wait.until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#ft-table tbody tr"))
        )
        assert len(rows) == 50  # one page, not the whole table
        # How good this SAE is, from results/sae/sae_summary.json.
        assert "held-out FVU" in driver.find_element(By.ID, "ft-sae").text
        assert "seed floor" in driver.find_element(By.ID, "ft-effect").text
        driver.find_element(By.ID, "tab-headlines").click()
        chips = driver.find_elements(By.CSS_SELECTOR, "#hl-list .chip")
        first = chips[0].text.split(":")[0]  # "Feature 12"
        chips[0].click()
        title = wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "#detail h2"))
        )
        assert title.text == first
        assert driver.find_element(By.ID, "features").is_displayed()
        meta = json.loads(driver.execute_script("return JSON.stringify(state.meta)"))
        detail = driver.find_element(By.ID, "detail").text
        if meta["parts"]["examples"]:
            tokens = wait.until(
                ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#contexts .tok"))
            )
            assert tokens
        else:
            assert "Not built yet: activate the examples stage" in detail
        assert "Activation histogram".upper() in detail.upper()
        driver.save_screenshot(str(tmp_path / "viewer.png"))
        assert (tmp_path / "viewer.png").stat().st_size > 10_000
        assert not driver.find_element(By.ID, "error").is_displayed()
