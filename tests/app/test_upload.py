"""Uploads: a good file is parsed on the server and fitted; a bad one is refused by name, the previous snapshot
stays loaded."""

from __future__ import annotations

import gzip

import pytest

pytestmark = pytest.mark.browser

UPLOAD = "#snapshot-upload input[type=file]"


def _send(page, name: str, data: bytes, mime: str = "application/octet-stream") -> None:
    page.set_input_files(UPLOAD, files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_a_gzipped_snapshot_upload_is_loaded_and_fitted(app_url, page, artifacts, ui):
    before = ui.open_app(page, app_url)
    _send(page, "my_spx_chain.csv.gz", gzip.compress((ui.root / "data" / "spx_demo.csv").read_bytes()))
    ui.notification(page, "Uploaded my_spx_chain.csv.gz")
    shown = ui.wait_figure(page, "surface-graph", other_than=before["result"])
    assert "SPX" in shown["title"]
    summary = page.locator("#snapshot-summary").inner_text()
    assert "SPX" in summary and "my_spx_chain.csv.gz" in summary
    assert not page.locator("#synthetic-badge").is_visible()  # an upload is not labelled as demo data
    assert "upload=" in page.url  # the link names the upload by its content hash
    page.locator("#snapshot-select").click()
    assert page.get_by_text("Uploaded", exact=True).is_visible()
    page.keyboard.press("Escape")
    page.screenshot(path=str(artifacts / "03_upload.png"))
    assert page.console_errors == []


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("quotes.csv", b"this,is,not\n1,a,snapshot\n", "quotes.csv"),
        ("chain.json", b"{not json", "chain.json"),
        ("huge.csv", None, "MB"),  # above the cap of the app under test
    ],
    ids=["not-a-snapshot", "broken-json", "too-large"],
)
def test_a_bad_upload_is_refused_by_name_and_the_previous_snapshot_stays(app_url, page, artifacts, ui, name, data,
                                                                          says):
    before = ui.open_app(page, app_url)
    _send(page, name, data if data is not None else b"x" * int((ui.max_snapshot_mb + 0.5) * 1024**2))
    note = ui.notification(page, f"Upload rejected: {name}")
    assert says in note.inner_text()
    assert ui.figure(page, "surface-graph")["result"] == before["result"]
    assert "btc_demo.csv" in page.locator("#snapshot-summary").inner_text()
    assert page.locator("#snapshot-select").input_value() == "btc_demo.csv"
    if name == "quotes.csv":
        page.screenshot(path=str(artifacts / "04_bad_upload.png"))
