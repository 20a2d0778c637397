"""Browser tests of `medfoundry console`: Playwright (PyPI) driving Debian's chromium against a console started by the
test on the tiny profile. A data-curation run is started from the form first and checked for SUCCEEDED last, so the
other tests run while it goes on."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.console.seeding import register_scored_version, tiny_profile

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OPERATOR_TOKEN = "operator-token-for-console-tests"
VIEWER_TOKEN = "viewer-token-for-console-tests"
SERVER_KEY = "model-server-key-123"
MODEL = "medfoundry-medvlm"
N_ITEMS = 64
REPO_ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("MEDFOUNDRY_CONSOLE_SCREENSHOTS", "") or "")
STATE: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_args():
    return ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def playwright_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (make setup installs it)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make setup installs it with apt-get where it can)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=_launch_args())
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    """Our model server with a tiny random-init model, requiring an API key."""
    from medfoundry.config import load_profile
    from medfoundry.config.release import ServingConfig
    from medfoundry.models.loading import build_base_model
    from medfoundry.serving.model import MedVLMModel
    from medfoundry.serving.server import BackgroundServer, ServerSettings

    out = tmp_path_factory.mktemp("console_model")
    corpus = ["The chest radiograph shows a right lower lobe pneumonia.", "Metformin treats type 2 diabetes."] * 15
    build_base_model(load_profile("tiny").model, corpus, out)
    serving = ServingConfig(max_batch_size=2, batch_timeout_ms=5, max_queue=8, max_new_tokens=24)
    settings = ServerSettings(port=_free_port(), api_key=SERVER_KEY, serving=serving)
    with BackgroundServer(MedVLMModel("medvlm", str(out), serving), settings) as url:
        yield url


@pytest.fixture(scope="module")
def console(tmp_path_factory, model_server):
    """A console subprocess on a fresh workspace with two scored model versions; v1 already promoted to dev."""
    from medfoundry.release.promote import promote_model

    home = tmp_path_factory.mktemp("console_ws")
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, so an earlier test's store can linger in the
    # environment: the versions below must land in this workspace's store, the one the console reads.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    model_dir = home / "model-files"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "tiny"}')
    # v1 answers every other item, v2 three in four (and every rare item both times): v2 passes the gate over v1.
    v1 = register_scored_version(home, "seed-run-1", [int(i % 2 == 0) for i in range(N_ITEMS)], model_dir)
    v2 = register_scored_version(home, "seed-run-2", [int(i % 4 != 3) for i in range(N_ITEMS)], model_dir)
    assert promote_model(tiny_profile(home), MODEL, v1, "dev", actor="seed").promoted
    tokens = home / "tokens"
    tokens.write_text(f"{OPERATOR_TOKEN} operator alice\n{VIEWER_TOKEN} viewer bob\n")
    key_file = home / "server-key"
    key_file.write_text(SERVER_KEY)
    port = _free_port()
    env = {**os.environ, "MEDFOUNDRY_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (home / "console.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medfoundry.cli", "console", "--port", str(port), "--token-file", str(tokens),
         "--endpoint", model_server, "--endpoint-key-file", str(key_file)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 240
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"console did not start: {(home / 'console.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield {"url": url, "home": home, "v1": v1, "v2": v2}
    import json
    import signal

    for record in (home / "runs").glob("*.json"):  # runs a failed test left going: stop their process groups
        run = json.loads(record.read_text())
        if run["status"] == "RUNNING" and run.get("pid"):
            try:
                os.killpg(run["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _page(browser, console, token: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(console["url"] + "/login")
    page.fill("input[name=token]", token)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/runs$"))
    return page


def _shot(page, name: str) -> None:
    if SHOTS.parts:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _aliases(home: Path) -> dict[str, list[str]]:
    from medfoundry import tracking
    from medfoundry.services.models import list_versions

    tracking.configure(tiny_profile(home))
    return {v.version: v.aliases for v in list_versions(MODEL)}


def _git_log(home: Path) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%s%n%b%x1e"], cwd=home / "gitops", capture_output=True, text=True)
    return [entry.strip() for entry in out.stdout.split("\x1e") if entry.strip()]


def test_invalid_override_shows_field_error_and_starts_nothing(playwright_browser, console):
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(console["url"] + "/pipelines?pipeline=medical-data-curation&profile=tiny")
    _shot(page, "pipelines")
    page.fill("input[name='f:pretrain.max_steps']", "many")
    page.click("button:has-text('Start run')")
    error = page.locator("label[data-field='pretrain.max_steps'] .field-error")
    assert "valid integer" in error.inner_text()
    assert page.locator("input[name='f:pretrain.max_steps']").input_value() == "many"  # what the user typed stays
    assert not list((console["home"] / "runs").glob("*.json")), "an invalid form must start nothing"
    page.context.close()


def test_start_run_from_form(playwright_browser, console):
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(console["url"] + "/pipelines?pipeline=medical-data-curation&profile=tiny")
    page.fill("input[name='f:data.max_dicom_files']", "4")
    started = time.monotonic()
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r".*/runs/\d{8}-\d{6}-[0-9a-f]{6}$"))
    assert time.monotonic() - started < 15, "starting a run must return at once"
    assert page.locator("#run-state").inner_text() in ("RUNNING", "SUCCEEDED")
    STATE["run_url"] = page.url
    page.context.close()


def test_compare_two_model_versions(playwright_browser, console):
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(console["url"] + "/models")
    _shot(page, "models")
    page.click("text=Compare two versions of " + MODEL)
    page.select_option("select[name=base]", console["v1"])
    page.select_option("select[name=candidate]", console["v2"])
    page.click("#compare-form button")
    row = page.locator("#comparison tbody tr").first
    cells = [c.inner_text() for c in row.locator("td").all()]
    assert cells[0] == "heldout"
    assert cells[1] == "0.500" and cells[2] == "0.750" and cells[3] == "+0.250"
    assert cells[5] == str(N_ITEMS) and cells[6] == "yes"  # 16 more items right, none worse: significant
    lo, hi = (float(x) for x in re.findall(r"[+-]\d\.\d+", cells[4]))
    assert 0 < lo < 0.25 < hi
    assert page.locator("svg.plot circle").count() == 1
    _shot(page, "compare")
    page.context.close()


def test_promote_then_roll_back(playwright_browser, console):
    home, v1, v2 = console["home"], console["v1"], console["v2"]
    commits_before = len(_git_log(home))
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(f"{console['url']}/models/{MODEL}/{v2}?env=dev")
    checklist = page.locator("#gate-checklist").inner_text()
    assert f"paired delta +0.2500 over {N_ITEMS} shared items" in checklist
    page.check("#promote-form input[name=confirm]")
    _shot(page, "model")
    page.click("#promote-form button")
    result = page.locator("#promote-result")
    assert f"promoted {MODEL} v{v2} to dev" in result.inner_text()
    aliases = _aliases(home)
    assert "dev" in aliases[v2] and "dev" not in aliases[v1]  # (champion moves only for prod)
    page.click("#promote-result a")
    assert "Medfoundry-Actor: alice" in page.locator("#commit").inner_text()

    page.goto(console["url"] + "/gitops?env=dev")
    page.check("#rollback-form input[name=confirm]")
    page.click("#rollback-form button")
    assert f"now serving v{v1}" in page.locator("#rollback-result").inner_text()
    _shot(page, "gitops")
    aliases = _aliases(home)
    assert "dev" in aliases[v1]
    assert aliases[v2] == ["candidate"]  # dev moved back; candidate stays on the newest version
    log = _git_log(home)
    assert len(log) == commits_before + 2
    assert log[0].startswith(f"Roll back {MODEL} v{v2} in dev") and "Medfoundry-Actor: alice" in log[0]
    assert log[1].startswith(f"Promote {MODEL} v{v2} to dev") and "Medfoundry-Actor: alice" in log[1]
    from medfoundry.release.registry import get_version

    tags = get_version(MODEL, v2).tags
    assert tags["promoted.dev.by"] == "alice" and tags["rolled_back.dev.by"] == "alice"
    page.context.close()


def test_viewer_cannot_promote(playwright_browser, console):
    home = console["home"]
    before, commits = _aliases(home), len(_git_log(home))
    page = _page(playwright_browser, console, VIEWER_TOKEN)
    page.goto(f"{console['url']}/models/{MODEL}/{console['v2']}?env=dev")
    assert page.locator("#promote-form").count() == 0
    csrf = page.locator("body").get_attribute("data-csrf")
    response = page.context.request.post(
        f"{console['url']}/models/{MODEL}/{console['v2']}/promote",
        form={"env": "dev", "confirm": "yes", "csrf_token": csrf}, max_redirects=0,
    )
    assert response.status == 403 and "viewer role" in response.text()
    assert _aliases(home) == before and len(_git_log(home)) == commits
    page.context.close()


def test_request_without_csrf_token_is_refused(playwright_browser, console):
    home = console["home"]
    before, commits = _aliases(home), len(_git_log(home))
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    url = f"{console['url']}/models/{MODEL}/{console['v2']}/promote"
    response = page.context.request.post(url, form={"env": "dev", "confirm": "yes"}, max_redirects=0)
    assert response.status == 403 and "CSRF" in response.text()
    forged = page.context.request.post(url, form={"env": "dev", "confirm": "yes", "csrf_token": "0" * 64})
    assert forged.status == 403
    assert _aliases(home) == before and len(_git_log(home)) == commits
    page.context.close()


def test_chat_streams_with_uploaded_images(playwright_browser, console, model_server, tmp_path):
    from PIL import Image
    from pydicom.data import get_testdata_file

    png = tmp_path / "scan.png"
    Image.new("RGB", (64, 64), (120, 30, 30)).save(png)
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(console["url"] + "/playground")
    for image in (png, Path(get_testdata_file("CT_small.dcm"))):
        page.set_input_files("input[name=image]", str(image))
        page.fill("input[name=max_tokens]", "16")
        page.click("#send")
        page.wait_for_selector("#answer[data-done='1']")
        # The page counts network reads, and a tiny model's whole stream can land in one read: token-by-token
        # streaming is asserted below on the events the console's service receives.
        assert int(page.locator("#answer").get_attribute("data-chunks")) >= 1
        assert page.locator("#answer").inner_text().strip()
        page.evaluate("document.getElementById('answer').removeAttribute('data-done')")
    from medfoundry.services.playground import ChatRequest, stream_chat

    pieces = list(stream_chat(ChatRequest(endpoint=model_server, question="What does metformin treat?",
                                          image=png.read_bytes(), image_name="scan.png", max_tokens=16), SERVER_KEY))
    assert len(pieces) >= 2, "tokens must arrive as a stream of events, not one reply"
    snippet = page.locator("#snippet-curl").inner_text()
    assert "/openai/v1/chat/completions" in snippet and "$MEDFOUNDRY_API_KEY" in snippet
    assert SERVER_KEY not in page.content(), "the endpoint's key must never reach the page"
    _shot(page, "playground")
    # An endpoint that is down: a clear message, no answer.
    page.fill("input[name=endpoint]", "http://127.0.0.1:9")
    page.click("#send")
    page.wait_for_selector("#chat-error:not([hidden])")
    assert "cannot reach http://127.0.0.1:9" in page.locator("#chat-error").inner_text()
    page.context.close()


def test_started_run_reaches_succeeded(playwright_browser, console):
    assert "run_url" in STATE, "the run was not started"
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(STATE["run_url"])
    # The page polls itself (htmx) until the run ends; no reload here.
    page.wait_for_selector("#run-state:text-matches('SUCCEEDED|FAILED|CANCELLED')", timeout=600_000)
    assert page.locator("#run-state").inner_text() == "SUCCEEDED", page.locator("pre.log").inner_text()[-3000:]
    timeline = page.locator(".timeline").inner_text()
    assert re.search(r"curate\s+FINISHED.*kept=\d", timeline), timeline
    _shot(page, "run")
    page.goto(console["url"] + "/runs")
    assert "SUCCEEDED" in page.locator("#runs").inner_text()
    _shot(page, "runs")
    page.goto(console["url"] + "/data")
    assert page.locator("svg.plot").count() >= 1 and page.locator(".plots img").count() >= 1
    _shot(page, "data")
    page.context.close()


def test_cancel_a_running_run(playwright_browser, console):
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(console["url"] + "/pipelines?pipeline=medical-data-curation&profile=tiny")
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r".*/runs/\d{8}-\d{6}-[0-9a-f]{6}$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel run')")
    page.wait_for_selector("#run-state:text('CANCELLED')")
    assert "cancelled by alice" in page.locator(".error").first.inner_text()
    import json

    pid = json.loads((console["home"] / "runs" / f"{run_id}.json").read_text())["pid"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the run and its stage processes are gone
    page.context.close()


@pytest.mark.slow
def test_full_recipe_from_the_form_registers_a_model(playwright_browser, console):
    """The whole tiny recipe (about 3 min on an idle 2-core machine) started from the form, to a registered version."""
    page = _page(playwright_browser, console, OPERATOR_TOKEN)
    page.goto(console["url"] + "/pipelines?pipeline=medical-mllm-recipe&profile=tiny")
    page.click("button:has-text('Start run')")
    page.wait_for_url(re.compile(r".*/runs/\d{8}-\d{6}-[0-9a-f]{6}$"))
    page.wait_for_selector("#run-state:text-matches('SUCCEEDED|FAILED|CANCELLED')", timeout=1_800_000)
    assert page.locator("#run-state").inner_text() == "SUCCEEDED", page.locator("pre.log").inner_text()[-3000:]
    assert re.search(r"register\s+FINISHED", page.locator(".timeline").inner_text())
    page.click(f"a:has-text('{MODEL} v')")
    assert page.locator("svg.plot circle").count() >= 1  # the held-out score with its interval
    page.context.close()
