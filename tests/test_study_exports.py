"""Every CSV the study writes opens in a spreadsheet as data: text quoted, formulas neutralised."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from study.exports import FORMULA_START, csv_table, safe_cell

DANGEROUS = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "|calc",
    "\t=1+1",
    "\r=1+1.png",
    "\n=1+1",
    " =1+1",
    "  +1",
    "\u3000=1+1",  # ideographic space
    "\uff1d1+1",  # full-width =
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(A1)",
    "\uff5ccalc",
]


@pytest.mark.parametrize("text", DANGEROUS)
def test_every_formula_prefix_is_neutralised(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["photo.png", "kodim01", "a=b", "1+1", "", "it's"])
def test_harmless_text_is_left_as_it_is(text):
    assert safe_cell(text) == text


def test_the_listed_prefixes_are_all_covered():
    assert set("=+-@|\t\r\n\uff1d\uff0b\uff0d\uff20") <= FORMULA_START


def test_a_table_quotes_every_text_cell_and_leaves_numbers_bare():
    frame = pd.DataFrame(
        {
            "photo": [*DANGEROUS, 'say "hi"', None],
            "n": list(range(-1, len(DANGEROUS) + 1)),
            "rate": [0.5] * len(DANGEROUS) + [np.nan, -0.25],
            "real": [True] * (len(DANGEROUS) + 2),
        }
    )
    text = csv_table(frame)
    lines = text.split("\n")
    assert lines[0] == '"photo","n","rate","real"'
    assert lines[1] == '"\'=1+1",-1,0.5,"True"'
    assert text.endswith(f',{len(DANGEROUS)},-0.25,"True"\n')  # a missing value: empty
    back = pd.read_csv(io.StringIO(text))
    assert len(back) == len(frame)  # no cell broke out into a row of its own
    assert back["photo"].tolist()[: len(DANGEROUS)] == ["'" + t for t in DANGEROUS]
    assert back["photo"].tolist()[-2] == 'say "hi"'
    assert back["n"].tolist() == frame["n"].tolist()  # negative numbers stay numbers


def test_the_report_files_are_written_safe(tmp_path):
    from study.report import Report, write_report

    table = pd.DataFrame({"condition": ["gray"], "n": [0], "k": [0], "rate": [np.nan]})
    responses = pd.DataFrame({"photo": ["\r=1+1.png"], "condition": ["+gray"], "rt_ms": [-5]})
    report = Report("2afc", table, responses, pd.DataFrame(), responses, 0.8, set())
    paths = write_report(report, tmp_path)
    for kind in ("photos", "responses"):
        text = paths[kind].read_bytes().decode("utf-8")
        assert text == '"photo","condition","rt_ms"\n"\'\r=1+1.png","\'+gray",-5\n'
