"""Swagger UI at /ui, rendered by headless Chromium: it shows every operation of the served
document, says which ones this server does not implement, and loads nothing from elsewhere.

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it). Without it this test
fails rather than skips: the rendered page is what a reader sees. The flags keep Chromium off the
network (this test runs on machines without one): no background services, and every host name
but the server's resolves to nothing, so a page that needed a CDN would not render here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from localai_runtime.http.routing import find_handlers
from localai_runtime.spec.status import SUMMARY_PREFIX

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-domain-reliability",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    # Virtual time skips ahead whenever the page is idle: the budget bounds waiting, not work.
    "--virtual-time-budget=15000",
]


def render(url: str, *extra: str) -> str:
    """The page's DOM once Swagger UI is done (Chromium's ``--dump-dom``)."""
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: this test needs Debian's chromium "
        "(apt-get install --no-install-recommends chromium; .ci/run installs it as root)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def summaries(dom: str) -> dict[str, str]:
    """operationId -> the summary Swagger UI shows beside the path, for each rendered operation
    (the document's webhooks, requests OpenAI would send, are left out)."""
    blocks = list(re.finditer(r'<div class="opblock opblock-[a-z]+[^"]*" id="operations-([^"]*)"', dom))
    found = {}
    for block, following in zip(blocks, [*blocks[1:], None], strict=True):
        if block.group(1).startswith("webhooks-"):
            continue
        part = dom[block.end():following.start() if following else len(dom)]
        link = re.search(r'href="#/[^/"]+/([^"]+)"', part)  # the deep link: #/<tag>/<operationId>
        description = re.search(r'<div class="opblock-summary-description">(.*?)</div>', part, re.S)
        assert link, block.group(0)
        found[link.group(1)] = description.group(1) if description else ""
    return found


@pytest.fixture(scope="module")
def rendered(server) -> tuple[str, float]:
    started = time.monotonic()
    dom = render(server.url + "/ui/", "--dump-dom")
    return dom, time.monotonic() - started


def test_swagger_ui_renders_every_operation_and_says_which_are_not_implemented(rendered, server, built_spec):
    dom, seconds = rendered
    shown = summaries(dom)
    openai = built_spec.operations_in("openai")  # the selector shows OpenAI's document first
    assert set(shown) == set(openai), (len(shown), seconds)
    implemented = set(find_handlers(openai))
    assert {"createChatCompletion", "createEmbedding", "getHealth"} <= implemented
    for op_id, summary in shown.items():
        assert summary.startswith(SUMMARY_PREFIX) == (op_id not in implemented), (op_id, summary[:200])
    assert not shown["createChatCompletion"].startswith("Not implemented")
    assert shown["createImage"].startswith("Not implemented: Creates an image given a prompt.")
    assert shown["createAssistant"].startswith("Not implemented: ")
    # The top of the page counts them.
    assert f"This server implements {len(implemented)} of these {len(openai)} operations" in dom
    # A tag with no implemented operation says so beside its name.
    tags = dict(re.findall(r'<h3 class="opblock-tag"[^>]*data-tag="([^"]+)"[^>]*>(.*?)</h3>', dom, re.S))
    assert "Not implemented by this server" in tags["Images"]
    assert "Not implemented" not in tags["Chat"]
    assert seconds < 60, f"Chromium took {seconds:.1f} s to render /ui"


def test_swagger_ui_loads_its_code_from_this_server(rendered, server):
    dom, _ = rendered
    loaded = re.findall(r'<(?:script|link|img)\b[^>]*?\b(?:src|href)="([^"]*)"', dom)
    assert any(url.endswith("swagger-ui-bundle.js") for url in loaded), loaded
    elsewhere = [url for url in loaded if re.match(r"(?:[a-z]+:)?//", url) and not url.startswith(server.url)
                 and not url.startswith("data:")]
    assert not elsewhere, elsewhere


def test_swagger_ui_selects_anthropics_document(server, built_spec):
    dom = render(server.url + "/ui/?urls.primaryName=Anthropic%20API%20(served%20by%20localai-runtime)", "--dump-dom")
    shown = summaries(dom)
    anthropic = built_spec.operations_in("anthropic")
    assert set(shown) == set(anthropic), len(shown)
    assert not shown["beta_messages_post"].startswith(SUMMARY_PREFIX)
    assert shown["message_batches_post"].startswith(SUMMARY_PREFIX)
    assert "OpenAI API (served by localai-runtime)" in dom  # the selector offers both
