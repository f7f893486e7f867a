"""`tinytnas dashboard`: optuna-dashboard on a search's storage, checked over HTTP and in Chromium.

The browser part drives Debian's Chromium (/usr/bin/chromium) through Playwright's Python
package, never a downloaded browser. Without Chromium or Playwright it is skipped locally and
fails on CI (``CI=true``), like the other external services.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import require_service

from tinytnas_optuna.cli import main

CHROMIUM = os.environ.get("TINYTNAS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A short real search on gunpoint: a few trained trials with their .tflite artifacts."""
    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder / 'tinytnas.db'}"
    code = main(["search", "--dataset", "gunpoint", "--ram", "20KB", "--flash", "64KB",
                 "--macs", "60K", "--timeout", "25s", "--steps", "300", "--storage", url,
                 "--study", "gp", "--progress", "none", "--no-model"])
    assert code == 0  # 300 steps learn gunpoint: the best is clearly above chance
    # A second search in the same storage, with its own artifact folder and metric.
    code = main(["search", "--dataset", "gunpoint", "--ram", "20KB", "--flash", "64KB",
                 "--macs", "60K", "--timeout", "20s", "--steps", "300", "--storage", url,
                 "--study", "other", "--metric", "balanced_accuracy", "--artifact-dir",
                 str(folder / "other-artifacts"), "--progress", "none", "--no-model"])
    assert code == 0
    return url


@pytest.fixture(scope="module")
def dashboard(study_url: str) -> Iterator[str]:
    """`tinytnas dashboard` on a free loopback port; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinytnas_optuna.cli", "dashboard", "--storage", study_url,
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.mark.full
def test_rest_api_lists_trials_with_figures_notes_plots_and_artifacts(
    dashboard: str, study_url: str
) -> None:
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    summary = next(s for s in studies if s["study_name"] == "gp")
    detail = get_json(f"{dashboard}/api/studies/{summary['study_id']}?after=0")
    assert detail["objective_names"] == ["accuracy"]
    assert "Best: k=" in detail["note"]["body"]
    assert {g["id"] for g in detail["plotly_graph_objects"]} == {
        "tinytnas-accuracy-vs-figures", "tinytnas-search-path"}
    trained = [t for t in detail["trials"] if t["artifacts"]]
    assert trained, "no trial carries its .tflite"
    measured = 0
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {p["name"] for p in trial["params"]} == {"k", "c"}
        assert "phase" in attrs
        if "interrupted" in attrs and "ram" not in attrs:
            # The time bound came before this candidate was measured: no figure, no training.
            assert str(attrs["epochs_trained"]) == "0" and not trial["constraints"]
            continue
        assert {"ram", "flash", "macs", "feasible"} <= set(attrs)
        assert len(trial["constraints"]) == 3
        measured += 1
    assert measured >= len(detail["trials"]) - 1  # only the last one can be cut before its gate
    artifact = next(a for a in trained[0]["artifacts"] if a["filename"].endswith(".tflite"))
    assert artifact["filename"].endswith("_int8.tflite")
    url = (f"{dashboard}/artifacts/{summary['study_id']}/{trained[0]['trial_id']}/"
           f"{artifact['artifact_id']}")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read()[4:8] == b"TFL3"


@pytest.fixture
def page() -> Iterator[object]:
    """A page of a real headless Chromium (Debian's), driven by Playwright."""
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
        require_service("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("Playwright", 'pip install playwright (the "dev" extra)')
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


@pytest.mark.full
def test_browser_shows_trials_with_figures_and_artifact(
    dashboard: str, study_url: str, page: Any
) -> None:
    study = optuna.load_study(study_name="gp", storage=study_url)
    best = max((t for t in study.trials if t.user_attrs.get("tflite_artifact")),
               key=lambda t: t.value or 0)
    study_id = study._study_id
    page.goto(f"{dashboard}/dashboard/studies/{study_id}/trials")
    filename = f"trial{best.number}_k{best.params['k']}_c{best.params['c']}_int8.tflite"
    page.get_by_text(f"Trial {best.number}", exact=True).first.click()
    page.get_by_text(filename).first.wait_for(timeout=30_000)
    text = page.inner_text("body")
    assert f"{len(study.trials)} Trials" in text
    for label, value in (("ram", best.user_attrs["ram"]), ("flash", best.user_attrs["flash"]),
                         ("macs", best.user_attrs["macs"]), ("feasible", "True")):
        assert re.search(rf"\b{label}\s+{value}\b", text), (label, value)
    assert re.search(rf"\bk\s+{best.params['k']}\b", text)
    assert re.search(rf"\bc\s+{best.params['c']}\b", text)
    assert "Artifacts" in text

    page.goto(f"{dashboard}/dashboard/studies/{study_id}")
    page.get_by_text("search path over (k, c)").first.wait_for(timeout=30_000)
    assert "against hardware figures" in page.inner_text("body")


@pytest.mark.full
def test_every_search_of_the_storage_serves_its_artifacts(dashboard: str) -> None:
    # Two searches recorded two artifact folders; the dashboard serves both, with each metric.
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    for name, metric in (("gp", "accuracy"), ("other", "balanced_accuracy")):
        summary = next(s for s in studies if s["study_name"] == name)
        detail = get_json(f"{dashboard}/api/studies/{summary['study_id']}?after=0")
        assert detail["objective_names"] == [metric]
        trial = next(t for t in detail["trials"] if t["artifacts"])
        # Each trained trial has its int8 model and its network's weights.
        names = [a["filename"] for a in trial["artifacts"]]
        assert sorted(n.split(".", 1)[1] for n in names) == ["tflite", "weights.npz"], names
        artifact = next(a for a in trial["artifacts"] if a["filename"].endswith(".tflite"))
        url = (f"{dashboard}/artifacts/{summary['study_id']}/{trial['trial_id']}/"
               f"{artifact['artifact_id']}")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read()[4:8] == b"TFL3", name
