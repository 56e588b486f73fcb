"""Exports: parameters JSON, the fitted vol grid CSV and the quotes with implied vols CSV download from the
header menu; figures carry a PNG button named after the view."""

from __future__ import annotations

import csv
import io
import json

import pytest

pytestmark = pytest.mark.browser


def _download(page, item: str):
    page.get_by_role("button", name="Export").click()
    with page.expect_download() as info:
        page.get_by_role("menuitem", name=item).click()
    download = info.value
    return download.suggested_filename, download.path().read_text()


def test_exports_download_the_fit_and_the_quotes(app_url, page, ui):
    ui.open_app(page, app_url)
    name, text = _download(page, "Parameters (JSON)")
    params = json.loads(text)
    assert name.endswith("_svi_params.json") and name.startswith("smilescope_BTC_")
    assert params["model"] == "svi" and set(params["param_names"]) == {"a", "b", "rho", "m", "sigma"}
    assert len(params["params"]["a"]) == len(params["expiries"]) and "residuals" not in params

    name, text = _download(page, "Fitted vol grid (CSV)")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert name.endswith("_vol_grid.csv")
    assert {"expiry", "days", "k", "strike", "model_vol", "model_vol_pct"} <= set(rows[0])
    vols = [float(r["model_vol"]) for r in rows if r["model_vol"]]
    assert len(vols) == len(rows) and all(0.05 < v < 3.0 for v in vols)

    name, text = _download(page, "Quotes with implied vols (CSV)")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert name.endswith("_quotes_iv.csv") and len(rows) == 821  # every quote of btc_demo.csv
    assert {"strike", "iv_bid", "iv_mid", "iv_ask", "status"} <= set(rows[0])

    config = page.evaluate(
        "() => document.querySelector('#surface-graph .js-plotly-plot')._context.toImageButtonOptions")
    assert config["format"] == "png" and config["filename"] == "smilescope-surface"
    assert page.console_errors == []
