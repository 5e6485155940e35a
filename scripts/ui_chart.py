"""Encoder size in the MLflow UI: test HR@20 against encoder parameters, as the real UI draws it.

Writes a *shared view* of an experiment (the UI's own "share view" mechanism: an experiment tag
``mlflow.sharedViewState.<key>`` holding the view's JSON, opened with ``?viewStateShareKey=<key>``):
the sweep's cell runs sorted by ``encoder.params``, the runs table with the ``encoder.params`` /
``test/hr_at_20`` columns and the text encoder's name, and in the chart view a section "Encoder size"
with one scatter chart (X: metric ``encoder.params``, Y: metric ``test/hr_at_20``). Opening

    <server>/#/experiments/<id>/runs?viewStateShareKey=encoder-size&compareRunsMode=CHART

renders the chart with no clicks (``compareRunsMode=TABLE`` shows the runs table). Optionally renders
both views in headless Chromium (Playwright driving the Debian ``chromium``, installed with apt-get
when missing) and saves screenshots.

    python scripts/ui_chart.py --uri http://127.0.0.1:5000 --experiment ci-encoders        # prints the URLs
    python scripts/ui_chart.py --uri http://127.0.0.1:5000 --experiment ci-encoders \\
        --chart-png docs/img/mlflow-encoder-size-chart.png --table-png /tmp/runs.png

The tests read the rendered DOM through :func:`read_table` and :func:`read_scatter`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

SHARE_KEY = "encoder-size"
X_METRIC, Y_METRIC = "encoder.params", "test/hr_at_20"
ENCODER_TAG = "harness.encoder.text"
# the Chromium flags of scripts/ui_shot.sh (no sandbox as root, no GPU, nothing fetched in the background)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
# MLflow >= 3.9 opens its assistant panel on the first visit to a local server; mark that visit as done
NO_ASSISTANT = "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')"


def col(kind: str, key: str) -> str:
    """The UI's column id for a metric / param / tag (``metrics.`encoder.params```)."""
    return f"{kind}.`{key}`"


def view_state(x: str = X_METRIC, y: str = Y_METRIC, cells_only: bool = True) -> dict:
    """The shared view: search facets + the persisted UI state keys MLflow reads from a share tag."""
    section = "encoder-size-section"
    return {
        # sorting by a metric lists child runs flat (the default start-time order nests them under a collapsed
        # parent run, whose cells the charts then leave out); the filter drops the sweep's parent run
        "searchFilter": "tags.`harness.role` = 'cell'" if cells_only else "",
        "orderByKey": col("metrics", x), "orderByAsc": True,
        "selectedColumns": [col("metrics", x), col("metrics", y), col("tags", ENCODER_TAG)],
        # the UI applies widths only to the columns named in columnOrder (which it moves first)
        "columnOrder": [col("metrics", x), col("metrics", y), col("tags", ENCODER_TAG)],
        "columnWidths": {col("metrics", x): 140, col("metrics", y): 190, col("tags", ENCODER_TAG): 170},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunSections": [{"uuid": section, "name": "Encoder size", "display": True, "isReordered": False,
                                "deleted": False, "isGenerated": False, "columns": 1, "cardHeight": 420}],
        "compareRunCharts": [{"type": "SCATTER", "uuid": "encoder-size-scatter", "metricSectionId": section,
                              "deleted": False, "isGenerated": False, "runsCountToCompare": 100,
                              "xaxis": {"key": x, "type": "METRIC"}, "yaxis": {"key": y, "type": "METRIC"}}],
        "isAccordionReordered": True,
    }


def share_view(client, experiment_id: str, key: str = SHARE_KEY, **kw) -> None:
    """Store the view on the experiment (what the UI's "Share" button does)."""
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}", json.dumps(view_state(**kw)))


def view_url(server: str, experiment_id: str, mode: str, key: str = SHARE_KEY) -> str:
    """``mode``: ``TABLE`` (runs table) or ``CHART`` (chart view)."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={key}&compareRunsMode={mode}"


def chromium() -> str:
    """The Debian chromium binary (apt-get installs it when missing, as scripts/ui_shot.sh does)."""
    exe = shutil.which("chromium")
    if exe is None:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                       "--no-install-recommends chromium >/dev/null", shell=True, check=True, timeout=900)
        exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("chromium not found and could not be installed")
    return exe


@contextmanager
def browser():
    """Headless Chromium through Playwright (the system binary; Playwright downloads no browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def open_view(b, url: str, width: int = 1400, height: int = 900):
    """A fresh page (fresh profile) on ``url``."""
    page = b.new_context(viewport={"width": width, "height": height}).new_page()
    page.add_init_script(NO_ASSISTANT)
    page.goto(url)
    return page


def read_table(page, rows: int, timeout_ms: int = 120_000) -> dict:
    """Wait for ``rows`` rows with an ``encoder.params`` cell; return the header texts by column id and each
    row's cell texts by column id (top to bottom)."""
    cell = f'.ag-center-cols-container .ag-row [col-id="{col("metrics", X_METRIC)}"]'
    page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length >= n", arg=[cell, rows],
                           timeout=timeout_ms)
    return page.evaluate("""() => {
        const text = e => e.innerText.trim();
        const headers = {};
        for (const h of document.querySelectorAll('.ag-header-cell[col-id]')) headers[h.getAttribute('col-id')] = text(h);
        const rows = [...document.querySelectorAll('.ag-center-cols-container .ag-row')]
            .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
            .map(r => Object.fromEntries([...r.querySelectorAll('.ag-cell[col-id]')].map(c => [c.getAttribute('col-id'), text(c)])));
        return {headers, rows};
    }""")


def read_scatter(page, points: int, timeout_ms: int = 120_000) -> dict:
    """Wait for a Plotly scatter with ``points`` markers; return its axis titles, tick labels with their
    positions on the page, and the centre of every marker (pixels, page coordinates)."""
    page.wait_for_function("n => document.querySelectorAll('.js-plotly-plot .scatterlayer path.point').length >= n",
                           arg=points, timeout=timeout_ms)
    wait_still(page)
    return page.evaluate("""() => {
        const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => p.querySelector('.scatterlayer path.point'));
        const c = e => { const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; };
        const t = sel => { const e = plot.querySelector(sel); return e ? e.textContent : null; };
        return {
            xtitle: t('text.xtitle'), ytitle: t('text.ytitle'),
            xticks: [...plot.querySelectorAll('.xaxislayer-above .xtick text')].map(e => [e.textContent, c(e)[0]]),
            yticks: [...plot.querySelectorAll('.yaxislayer-above .ytick text')].map(e => [e.textContent, c(e)[1]]),
            points: [...plot.querySelectorAll('.scatterlayer path.point')].map(c),
            xtype: plot._fullLayout ? plot._fullLayout.xaxis.type : null,
            ytype: plot._fullLayout ? plot._fullLayout.yaxis.type : null,
        };
    }""")


_SI = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3, "µ": 1e-6, "μ": 1e-6, "n": 1e-9}


def tick_value(label: str) -> float:
    """A Plotly tick label as a number (``0.5M`` -> 500000, ``−1`` -> -1); ValueError if it is not one."""
    s = label.strip().replace("\u2212", "-").replace(",", "")
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)([kMGTmµμn]?)", s)
    if not m:
        raise ValueError(f"tick label {label!r} is not a number")
    return float(m.group(1)) * _SI.get(m.group(2), 1.0)


def wait_still(page, timeout_ms: int = 30_000) -> None:
    """Until the scatter's markers have not moved for 1 s (the cards resize once after the first draw)."""
    last, waited = None, 0
    while waited < timeout_ms:
        now = page.evaluate("() => [...document.querySelectorAll('.scatterlayer path.point')]"
                            ".map(e => { const r = e.getBoundingClientRect(); return [Math.round(r.x), Math.round(r.y)]; })")
        if now == last:
            return
        last = now
        page.wait_for_timeout(1000)
        waited += 1000


def shoot_chart(page, out: Path) -> None:
    """Screenshot of the chart view: runs list + the scatter card (the rest of the page left out)."""
    card = page.locator("[data-testid=experiment-view-compare-runs-card]", has=page.locator("path.point")).first
    box = card.bounding_box()
    top = page.locator("label:has(input[value=TABLE])").bounding_box()
    x0, y0 = max(0, top["x"] - 12), max(0, top["y"] - 12)
    x1, y1 = box["x"] + box["width"] + 12, box["y"] + box["height"] + 12
    page.screenshot(path=str(out), clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uri", required=True, help="MLflow server URL (the UI's origin, e.g. http://127.0.0.1:5000)")
    p.add_argument("--experiment", required=True, help="experiment name")
    p.add_argument("--key", default=SHARE_KEY, help="share key (default %(default)s)")
    p.add_argument("--all-runs", action="store_true", help="keep runs without harness.role=cell (not a sweep)")
    p.add_argument("--chart-png", type=Path, help="screenshot of the chart view")
    p.add_argument("--table-png", type=Path, help="screenshot of the runs table")
    p.add_argument("--size", default="1400x900", help="browser window WxH (default %(default)s)")
    args = p.parse_args(argv)
    from mlflow import MlflowClient

    client = MlflowClient(args.uri)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        p.error(f"no experiment {args.experiment!r} at {args.uri}")
    share_view(client, exp.experiment_id, args.key, cells_only=not args.all_runs)
    urls = {m: view_url(args.uri, exp.experiment_id, m, args.key) for m in ("TABLE", "CHART")}
    print(f"runs table: {urls['TABLE']}\nchart:      {urls['CHART']}")
    if args.chart_png or args.table_png:
        query = "" if args.all_runs else "tags.`harness.role` = 'cell'"
        n = sum(1 for r in client.search_runs([exp.experiment_id], query, max_results=1000)
                if X_METRIC in r.data.metrics and Y_METRIC in r.data.metrics)
        w, h = (int(v) for v in args.size.split("x"))
        with browser() as b:
            if args.table_png:
                page = open_view(b, urls["TABLE"], w, h)
                read_table(page, n)
                args.table_png.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.table_png))
            if args.chart_png:
                page = open_view(b, urls["CHART"], w, h)
                read_scatter(page, n)
                args.chart_png.parent.mkdir(parents=True, exist_ok=True)
                shoot_chart(page, args.chart_png)
        print(f"screenshots of {n} runs: {', '.join(str(f) for f in (args.table_png, args.chart_png) if f)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
