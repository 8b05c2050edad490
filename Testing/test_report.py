"""Reports and the results table: what a reader sees is there, identifying data goes when asked."""

import argparse
import base64
import re

import pytest
from pypdf import PdfReader

from jsnreg.report import (CSV_COLUMNS, DISCLAIMER, add_report_command, csv_row, read_results_csv,
                           write_report_html, write_report_pdf, write_results_csv)
from jsnreg.session import load_session, save_session
from test_session import IDENTIFYING, make_session

JOINTS = (("MCP2", 0.9, False), ("PIP3", 2.4, True), ("IP1", 0.2, False))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return make_session(tmp_path_factory.mktemp("case"), JOINTS)


def pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def pdf_image_count(path) -> int:
    return sum(len(page.images) for page in PdfReader(path).pages)


def test_pdf_holds_header_table_numbers_and_panels(session, tmp_path):
    write_report_pdf(session, tmp_path / "r.pdf")
    text = pdf_text(tmp_path / "r.pdf")
    for r in session.results:
        assert r.name in text
        assert f"{r.jsn_mm:+.3f}" in text and f"{r.mse_after:.5f}" in text and f"{r.confidence:.2f}" in text
    flagged = session.results[1]
    assert flagged.flagged and "FLAGGED" in text and flagged.flag_reason in text
    for shown in ("PID-73519", "1999-01-15", "2000-07-20", "18.1 months", "0.1750 mm", "jsnnet.pt",
                  DISCLAIMER, "dy(upper) - dy(lower)"):
        assert shown in text, shown
    assert ("jsnnet.pt + fine" in text) == bool(session.model.get("fine"))  # which network measured
    # 2 radiographs + per joint: 5 ROI/loss images and the colour bar
    assert pdf_image_count(tmp_path / "r.pdf") >= 2 + 5 * len(JOINTS)


def test_the_header_names_each_network_stage_and_its_passes(session):
    import copy

    from jsnreg.network import model_info
    from jsnreg.report import header_fields

    shipped = copy.copy(session)
    shipped.model = model_info()
    fields = dict(header_fields(shipped, deidentify=False))
    passes = shipped.model["passes"]
    assert fields["Model"] == f"jsnnet.pt + fine ×{passes['fine']} + precise ×{passes['precise']}"
    assert fields["Model ID"] == f"{shipped.model['version']}, SHA-256 {shipped.model['sha256'][:8]}"
    one_stage = dict(header_fields(session, deidentify=False))
    assert (one_stage["Model"], one_stage["Model ID"]) == ("jsnnet.pt", "test, SHA-256 abababab")
    assert max(len(fields["Model"]), len(fields["Model ID"])) <= 32  # the header's value column


def test_html_is_self_contained(session, tmp_path):
    write_report_html(session, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    sources = re.findall(r"src=['\"]([^'\"]*)", page)
    assert len(sources) == 1 + len(JOINTS)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"https?:|href=|<link|@import|url\(", page)
    assert "class='flagged'" in page and "PIP3" in page and DISCLAIMER in page
    assert f"{session.results[0].jsn_mm:+.3f}" in page


def test_deidentified_reports_hide_every_identifying_field(session, tmp_path):
    write_report_pdf(session, tmp_path / "r.pdf", deidentify=True)
    write_report_html(session, tmp_path / "r.html", deidentify=True)
    pdf = pdf_text(tmp_path / "r.pdf")
    page = re.sub(r"data:image/png;base64,[^'\"]*", "", (tmp_path / "r.html").read_text())
    info = " ".join(str(v) for v in PdfReader(tmp_path / "r.pdf").metadata.values())
    for text in (pdf, page, info):
        for secret in IDENTIFYING:
            assert secret.lower() not in text.lower(), secret
    for text in (pdf, page):
        assert "18.1 months (552 days)" in text and "day 552" in text and "de-identified" in text
        assert f"{session.results[0].jsn_mm:+.3f}" in text


def test_csv_round_trip(session, tmp_path):
    write_results_csv(session.results, tmp_path / "t.csv")
    rows = read_results_csv(tmp_path / "t.csv")
    assert rows == [csv_row(r) for r in session.results]
    assert tuple(rows[0]) == CSV_COLUMNS
    r = session.results[1]
    assert rows[1]["jsn_mm"] == r.jsn_mm and rows[1]["dy_lower"] == r.lower.dy_px
    assert rows[1]["flagged"] is True and rows[1]["flag_reason"] == r.flag_reason


def test_reopened_session_report_rebuilds_images_unless_stale(session, tmp_path):
    save_session(session, tmp_path / "s.json")
    reopened = load_session(tmp_path / "s.json")
    assert all(r.images is None for r in reopened.results)
    write_report_pdf(reopened, tmp_path / "r.pdf")
    assert pdf_image_count(tmp_path / "r.pdf") >= 2 + 5 * len(JOINTS)

    reopened.stale, reopened.radiographs = True, None
    reopened.warnings = ["the follow-up image changed"]
    write_report_pdf(reopened, tmp_path / "stale.pdf")
    text = pdf_text(tmp_path / "stale.pdf")
    assert "STALE RESULTS" in text and "Images unavailable" in text and "the follow-up image changed" in text
    assert pdf_image_count(tmp_path / "stale.pdf") == 0  # nothing drawn from a changed image
    assert f"{session.results[0].jsn_mm:+.3f}" in text

    # A real stale warning names the image file: de-identification removes it.
    (tmp_path / "moved").mkdir()
    save_session(session, tmp_path / "moved" / "s.json")
    (tmp_path / "moved" / "s.json").write_text((tmp_path / "moved" / "s.json").read_text()
                                              .replace("followup_doejane.dcm", "../gone_doejane.dcm"))
    missing = load_session(tmp_path / "moved" / "s.json")
    assert missing.stale and any("gone_doejane" in w for w in missing.warnings)
    write_report_pdf(missing, tmp_path / "anon.pdf", deidentify=True)
    text = pdf_text(tmp_path / "anon.pdf")
    assert "STALE RESULTS" in text and "path removed" in text and "doejane" not in text.lower()


def test_session_without_joints_reports_so(session, tmp_path):
    import dataclasses
    write_report_pdf(dataclasses.replace(session, results=[], joints=[]), tmp_path / "r.pdf")
    assert "No joint was measured" in pdf_text(tmp_path / "r.pdf")


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="jsnreg")
    add_report_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_report_command(session, tmp_path, capsys):
    save_session(session, tmp_path / "s.json")
    code = run_cli(["report", str(tmp_path / "s.json"), "--out", str(tmp_path / "r.pdf"),
                    "--html", str(tmp_path / "r.html"), "--csv", str(tmp_path / "t.csv"), "--deidentify"])
    assert code == 0
    assert len(read_results_csv(tmp_path / "t.csv")) == len(JOINTS)
    assert "PID-73519" not in pdf_text(tmp_path / "r.pdf") and (tmp_path / "r.html").stat().st_size > 0

    (tmp_path / "bad.json").write_text('{"schema": "jsnreg-session", "version": 99}')
    assert run_cli(["report", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "newer jsnreg" in err[0]
    assert not (tmp_path / "x.pdf").exists()
    assert run_cli(["report", str(tmp_path / "s.json")]) == 2
    assert run_cli(["report", str(tmp_path / "s.json"), "--out", str(tmp_path / "no" / "r.pdf")]) == 2
