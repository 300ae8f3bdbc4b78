"""The CLI's plain-text printing: tables and their empty-state lines."""

from __future__ import annotations

from toka.cli.output import table, table_or


def test_table_or_prints_the_table_when_there_are_rows():
    rows = [["ag-1", "running"], ["ag-22", None]]
    assert table_or(["id", "status"], rows, "no agents") == table(["id", "status"], rows)
    assert table_or(["id", "status"], rows, "no agents").splitlines() == [
        "ID     STATUS",
        "ag-1   running",
        "ag-22",
    ]


def test_table_or_prints_the_empty_line_when_there_are_none():
    assert table_or(["id"], [], "no agents yet: toka agent spawn NAME") == (
        "no agents yet: toka agent spawn NAME"
    )


def test_table_or_takes_rows_from_a_generator():
    assert table_or(["id"], (r for r in [["a"]]), "none") == "ID\na"
    assert table_or(["id"], (r for r in []), "none") == "none"


def test_a_table_shows_what_could_steer_a_terminal_escaped_and_aligned():
    rows = [["ag-1", "\x1b[31mred"], ["ag-2", "plain"], ["ag-\u202e3", None]]
    assert table(["id", "name"], rows).splitlines() == [
        "ID          NAME",
        "ag-1        \\x1b[31mred",
        "ag-2        plain",
        "ag-\\u202e3",
    ]
