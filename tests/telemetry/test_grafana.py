"""The Grafana dashboard generator and its command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asyncmachine as am
from asyncmachine.telemetry import METRICS
from asyncmachine.telemetry.grafana import grafana_dashboard, main


class States(am.Schema):
    """A typed schema for the dashboard tests."""

    Ready = am.state()
    Working = am.state(require=["Ready"])


SCHEMA = {"Ready": {}, "Working": {"require": ["Ready"]}}


def dashboard(*args: Any, **kwargs: Any) -> Any:
    """grafana_dashboard() as parsed JSON (what Grafana gets)."""
    return json.loads(json.dumps(grafana_dashboard(*args, **kwargs)))


def all_panels(dash: Any) -> list[Any]:
    """Top-level panels and panels nested in collapsed rows."""
    out: list[Any] = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dash: Any) -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [t["expr"] for p in all_panels(dash) for t in p.get("targets", [])]


def test_dashboard_is_json_and_deterministic() -> None:
    """The model serialises to JSON and the same input gives the same output."""
    raw = grafana_dashboard(["root", "worker"], SCHEMA, title="T")
    assert json.dumps(raw) == json.dumps(
        grafana_dashboard(["root", "worker"], SCHEMA, title="T")
    )
    a = dashboard(["root", "worker"], SCHEMA, title="T")
    assert a["title"] == "T"
    assert a["uid"] == dashboard([], title="T")["uid"]  # the uid is the title's
    assert a["uid"] != dashboard([], title="U")["uid"]
    uid = a["uid"]
    assert isinstance(uid, str)
    assert len(uid) <= 40
    assert "generated" in a["tags"]


def test_every_metric_of_the_table_is_queried() -> None:
    """Queries come from the metric table: each row is used, nothing else is."""
    text = " ".join(exprs(dashboard(["m"], SCHEMA)))
    used = set(re.findall(r"asyncmachine_\w+", text))
    assert used == {spec.series for spec in METRICS}


def test_panel_descriptions_come_from_the_table() -> None:
    """Each panel describes its metrics with the table's help texts."""
    helps = {spec.help for spec in METRICS}
    for p in all_panels(dashboard(["m"], SCHEMA)):
        if p["type"] == "row":
            continue
        description = p["description"]
        assert isinstance(description, str)
        assert any(h in description for h in helps), p["title"]


def test_machine_variable_offers_the_ids() -> None:
    """machine_id is a multi-select of the given ids; without ids, a label query."""
    dash = dashboard(["root", "rep,1"], SCHEMA)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "machine_id", "rpc_id"}
    mid = variables["machine_id"]
    assert mid["type"] == "custom"
    assert mid["multi"] is True
    assert [o["value"] for o in mid["options"]] == ["root", "rep,1"]
    assert mid["query"] == "root,rep\\,1"
    auto = dashboard([], SCHEMA)
    variables = {v["name"]: v for v in auto["templating"]["list"]}
    assert variables["machine_id"]["type"] == "query"
    assert "machine_id" in variables["machine_id"]["definition"]
    job = dashboard([], job="svc")["templating"]["list"][1]
    assert job["current"]["value"] == ["svc"]


@pytest.mark.parametrize(
    "schema",
    [SCHEMA, States, ["Ready", "Working"]],
    ids=["mapping", "typed", "names"],
)
def test_schema_states_filter_the_state_panels(schema: object) -> None:
    """The per-machine state panels select the schema's states, Exception included."""
    dash = dashboard(["m"], schema)
    state_exprs = [e for e in exprs(dash) if "state=~" in e]
    assert len(state_exprs) == 2
    for e in state_exprs:
        assert 'state=~"Ready|Working|Exception"' in e


def test_state_names_are_regex_escaped() -> None:
    """Names with regex characters are escaped in the state filter."""
    dash = dashboard(["m"], ["A.b", "C+"])
    # re.escape, then PromQL string escaping: the backslashes double
    assert any(r'state=~"A\\.b|C\\+|Exception"' in e for e in exprs(dash))
    assert any(
        r'state=~"Say\"hi\"|Exception"' in e
        for e in exprs(dashboard(["m"], ['Say"hi"']))
    )


def test_without_a_schema_every_state_is_shown() -> None:
    """schema=None: no state filter."""
    assert not any("state=~" in e for e in exprs(dashboard(["m"])))


def test_a_string_is_not_a_schema() -> None:
    """A bare string would silently become one state per character: refused."""
    with pytest.raises(TypeError, match="schema"):
        dashboard(["m"], "Ready")


def test_layout_ids_and_rows() -> None:
    """Panel ids are unique, panels fit the grid, the machine row repeats."""
    dash = dashboard(["a", "b"], SCHEMA)
    panels = all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    seen: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert isinstance(pos, dict)
        assert pos["x"] + pos["w"] <= 24
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & seen, p["title"]
        seen |= cells
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    assert [r.get("repeat") for r in rows] == [None, "machine_id", None]
    assert rows[2]["collapsed"] is True
    assert rows[2]["panels"]  # the aRPC panels live inside the collapsed row


def test_cli_writes_a_file(tmp_path: Path) -> None:
    """main() writes the dashboard to -o and returns 0."""
    out = tmp_path / "dash.json"
    code = main(
        [
            "--ids",
            "root,worker",
            "--states",
            "Ready,Working",
            "--title",
            "CLI",
            "--job",
            "svc",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    dash = json.loads(out.read_text())
    assert dash == dashboard(
        ["root", "worker"], ["Ready", "Working"], title="CLI", job="svc"
    )


def test_cli_loads_a_schema_by_import_path(capsys: pytest.CaptureFixture[str]) -> None:
    """--schema MODULE:ATTR imports a mapping or Schema class; output goes to stdout."""
    assert main(["--ids", "x", "--schema", "asyncmachine.rpc:STATE_SOURCE_SCHEMA"]) == 0
    dash = json.loads(capsys.readouterr().out)
    names = "|".join(am.rpc.STATE_SOURCE_SCHEMA)
    assert any(names in e for e in exprs(dash))
    assert main(["--schema", f"{__name__}:States"]) == 0
    assert "Ready|Working|Exception" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--schema", "no.such.module:X"],
        ["--schema", "asyncmachine:nope"],
        ["--schema", "asyncmachine"],
        ["--schema", "asyncmachine:__version__"],
        ["-o", "/nonexistent-dir/x.json"],
    ],
)
def test_cli_bad_input_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad --schema references and unwritable outputs exit 2 with one error line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_cli_usage_error_exits_2() -> None:
    """--schema and --states together are a usage error (argparse exits 2)."""
    with pytest.raises(SystemExit) as info:
        main(["--schema", "a:b", "--states", "A"])
    assert info.value.code == 2


def test_python_dash_m(tmp_path: Path) -> None:
    """python -m asyncmachine.telemetry.grafana runs in a fresh interpreter."""
    out = tmp_path / "d.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncmachine.telemetry.grafana",
            "--ids",
            "a",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(out.read_text())["title"] == "asyncmachine"
