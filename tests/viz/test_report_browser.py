"""``report.html`` in a real headless browser: it loads without console errors or requests, shows
every row, its images decode, and clicking a column header sorts the rows.

Needs Debian's ``chromium`` (found on PATH; with CI=true, as root with apt-get, it is installed) and
the ``playwright`` package (in the ``test`` extra; no browser download: the system chromium is used).
Outside CI it skips with the reason when either is missing; in CI a missing one is a failure.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gfi.cli import main
from tests import cli_tiny

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(reason + " (CI=true: the browser test must run)")
    pytest.skip(reason)


def _install_chromium() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True, timeout=900)
    subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env, capture_output=True,
                   timeout=1800)


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    if IN_CI and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        _install_chromium()
        if path := shutil.which("chromium"):
            return path
    _unavailable("no chromium on PATH (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def browser(chromium):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    cli_tiny.patch(mp)
    try:
        tmp = tmp_path_factory.mktemp("report")
        folder = tmp / "in"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(7):
            Image.fromarray((rng.random((30 + 5 * i, 40, 3)) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
        (folder / "<i>broken.jpg").write_text("not an image")
        out = tmp / "out"
        rc = main(["explain", str(folder), "--out", str(out), "--target", "top2", "--iters1", "2", "--iters2", "2",
                   "--quiet"])
        assert rc == 0
    finally:
        mp.undo()
    return out


def column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(f"#results tbody tr td:nth-child({index + 1})",
                                     "cells => cells.map(c => c.getAttribute('data-v') ?? c.textContent)")


def test_report_in_headless_chromium(browser, report):
    summary = json.loads((report / "results.json").read_text())
    rows = sum(len(r["targets"]) for r in summary["images"])
    assert rows == 14
    html = report / "report.html"
    assert html.stat().st_size < 30_000 * rows  # thumbnails, not full-size images

    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")

    assert page.locator("#results tbody tr").count() == rows
    assert page.locator("#failures tbody tr").count() == 1
    assert "<i>broken.jpg" in page.locator("#failures").inner_text()  # shown as text, not markup
    assert page.locator("#failures i").count() == 0
    # every image decodes (2 thumbnails per image shown once per target: input, stage 1, class map)
    sizes = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(sizes) == 3 * rows and all(s and s > 0 for s in sizes)
    headers = page.eval_on_selector_all("#results thead th", "ths => ths.map(t => t.textContent)")
    p_col, name_col = headers.index("p(target)"), headers.index("image")

    page.click(f"#results thead th:nth-child({p_col + 1})")
    up = [float(v) for v in column(page, p_col)]
    assert up == sorted(up) and len(up) == rows and up[0] < up[-1]
    page.click(f"#results thead th:nth-child({p_col + 1})")
    down = [float(v) for v in column(page, p_col)]
    assert down == sorted(up, reverse=True)
    assert page.get_attribute(f"#results thead th:nth-child({p_col + 1})", "aria-sort") == "descending"
    page.click(f"#results thead th:nth-child({name_col + 1})")
    names = column(page, name_col)
    assert names == sorted(names) and names[0] == "img0.png"
    page.click(f"#results thead th:nth-child({headers.index('#') + 1})")
    page.click(f"#results thead th:nth-child({headers.index('#') + 1})")
    assert [int(v) for v in column(page, 0)] == sorted((int(v) for v in column(page, 0)), reverse=True)

    # the legend explains the scores; the header counts in words; a class map opens its overlay
    legend = page.locator("#legend").inner_text()
    assert "p kept" in legend and "p removed" in legend and "Eq. 4" in legend and "batch" in legend
    assert "7 images, 14 maps" in page.locator("p").first.inner_text()
    # s/image: a batch's images show its mean time, marked with the batch size (issue 16)
    s_col = headers.index("s/image")
    texts = page.eval_on_selector_all(f"#results tbody tr td:nth-child({s_col + 1})", "cs => cs.map(c => c.innerText)")
    batches = [r["batch_images"] for r in summary["images"] for _ in r["targets"]]
    assert max(batches) > 1
    by_row = dict(zip(column(page, 1), texts, strict=True))  # image name -> its cell (sorted by name now)
    for rec in summary["images"]:
        cell = by_row[Path(rec["image"]).name]
        assert (f"mean of a batch of {rec['batch_images']}" in cell) == (rec["batch_images"] > 1), cell
    link = page.locator("#results tbody tr").first.locator("a")
    href = link.get_attribute("href")
    assert href.endswith(".png") and (html.parent / href).is_file()
    with page.expect_navigation():
        link.click()
    assert page.url.endswith(href) and page.url.startswith("file:")

    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing from the network
    page.close()


def _line_breaks(page, selector: str) -> list[list[str]]:
    """For each element of ``selector``: its text cut where the browser wrapped it onto a new line."""
    return page.eval_on_selector_all(selector, """cells => cells.map(cell => {
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        const lines = []; let top = null; let line = '';
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          for (let i = 0; i < node.length; i++) {
            const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
            const rect = r.getClientRects()[0]; if (!rect) continue;
            if (top !== null && rect.top > top + 2) { lines.push(line); line = ''; }
            top = rect.top; line += node.data[i];
          }
        }
        lines.push(line); return lines;
    })""")


def test_file_names_wrap_at_their_separators_not_mid_word(browser, tmp_path):
    """The report wrapped ILSVRC2012_val_00046154.JPEG as "ILSVRC2012_val_000461" / "54.JPEG": a name
    breaks after a separator (_ - . / space) where it must break at all, and only a run longer than
    the column between separators is cut inside."""
    from gfi.viz.report import render_report

    names = ["ILSVRC2012_val_00046154.JPEG", "holiday-photos_2023-08-14_beach-dog-running.jpg",
             "a_very_long_name_made_of_many_short_words_joined_by_underscores_in_a_row.png",
             "x" * 70 + ".png"]
    summary = {"images": [{"image": f"/data/{n}", "targets": [{"class": 1, "class_name": "one", "prob": 0.5}],
                           "top5": [], "seconds_per_image": 1.0} for n in names],
               "failures": [{"image": "/data/some-folder/another_long_file_name_for_the_failures_table.jpg",
                             "error": "not an image"}]}
    html = tmp_path / "report.html"
    html.write_text(render_report(summary, tmp_path))
    page = browser.new_page(viewport={"width": 700, "height": 900})
    page.goto(html.as_uri())
    wrapped = _line_breaks(page, "#results td.name") + _line_breaks(page, "#failures td.name")
    assert all("".join(lines) in (*names, summary["failures"][0]["image"]) for lines in wrapped)
    assert any(len(lines) > 1 for lines in wrapped), "nothing wrapped: the test would prove nothing"
    for lines in wrapped:
        for line in lines[:-1]:
            assert line[-1] in "_-./ " or (len(line) >= 12 and set(line) == {"x"}), lines
    # a name that fits on one line is not cut at all
    assert wrapped[0] == [names[0]] or all(line[-1] in "_-./" for line in wrapped[0][:-1])
    page.close()
