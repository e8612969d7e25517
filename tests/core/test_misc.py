"""Options, ids, logging (spec 10.10/10.11), ExampleNew and the AM_LOG environment."""

from __future__ import annotations

import pytest
from core_helpers import (
    Recorder,
    capture_logs,
    log_lines,
    log_text,
    machine,
    no_rels,
)

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED


def test_opts() -> None:
    """Go TestOpts: parent id, tags, queue limit, log level and set_tags."""
    m = no_rels()
    tags = ["a", "b"]
    m2 = am.Machine({}, parent=m, log_level=2, queue_limit=10, tags=tags)
    assert m2.parent_id == m.id
    assert m2.tags == tags
    assert m2.queue_limit == 10
    assert m2.log_level == 2
    m2.set_tags(["c"])
    assert m2.tags == ["c"]
    m3 = am.Machine({}, parent="parent-id")
    assert m3.parent_id == "parent-id"
    assert m.parent_id is None
    assert m.tags == []
    assert m.queue_limit == 1000
    assert am.Machine({}, id="given").id == "given"


def test_nil_ctx() -> None:
    """Go TestNilCtx: a machine without options gets a random id of more than 5 chars."""
    m1 = am.Machine({"A": am.State()})
    m2 = am.Machine({"A": am.State()})
    assert len(m1.id) > 5
    assert m1.id != m2.id


def test_example_new() -> None:
    """Go ExampleNew: Foo(require=[Bar]) stays inactive after add("Foo")."""
    m = am.Machine({"Foo": am.State(require=["Bar"]), "Bar": am.State()})
    assert m.add("Foo") == CANCELED
    assert not m.is_active("Foo")
    m.add(["Foo", "Bar"])
    assert m.is_active("Foo")


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Go TestEnv: AM_LOG sets the default log level."""
    monkeypatch.setenv("AM_LOG", "1")
    assert am.Machine({}).log_level == 1
    assert am.Machine({}, log_level=3).log_level == 3
    monkeypatch.setenv("AM_LOG", "4")
    assert am.Machine({}).log_level == 4
    monkeypatch.delenv("AM_LOG")
    assert am.Machine({}).log_level == 0


def test_logger(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestLogger: the level getter, external messages and the id prefix."""
    capture_logs(caplog)
    m = no_rels(id="abcdefgh", log_level=0)
    assert m.log_level == 0
    m.log("hidden %s", "x")
    m.add("A")
    assert log_lines(caplog) == []
    m.log_level = 1
    m.log("foo %s", "bar")
    m.add("B")
    assert log_lines(caplog) == ["[abcde] [exter] foo bar"]
    assert m.logger.name == "asyncmachine"


def test_log_args(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestLogArgs: a 5-char args mapper logs (arg=fo...)."""
    capture_logs(caplog)
    m = no_rels(["A"], log_level=5)
    m.log_args = am.new_args_mapper(["arg", "arg2"], 5)
    m.add("D", {"arg": "foofoofoo"})
    assert "[add] D (arg=fo...)" in log_text(caplog)


def test_new_args_mapper() -> None:
    """Go TestNewArgsMapper: values are cut to max_len characters, keys filtered."""
    mapper = am.new_args_mapper(["arg", "arg2"], 5)
    assert mapper({"arg": "foofoofoo"}) == {"arg": "fo..."}
    assert mapper({"arg": "foo", "other": "x"}) == {"arg": "foo"}
    default = am.new_args_mapper()
    assert default({"err": "e" * 25, "name": "n", "x": 1}) == {
        "err": "e" * 17 + "...",
        "name": "n",
    }
    short = am.new_args_mapper(["arg", "arg2"], 2)
    assert short({"arg": "foo"}) == {"arg": "fo"}
    assert short({"arg": "foo", "arg2": "bar"}) == {"arg": "fo", "arg2": "ba"}


def test_log_args_default_mapper(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: only mapped keys are shown, sorted, values cut to 20 characters."""
    capture_logs(caplog)
    m = no_rels(log_level=3)
    m.add("A", {"name": "n1", "id": "x" * 30, "secret": "s"})
    assert f"[add] A (id={'x' * 17}... name=n1)" in log_text(caplog)
    assert "secret" not in log_text(caplog)


def test_log_messages_transitions(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: the transition, state, implied and cancel messages."""
    capture_logs(caplog)
    m = no_rels(
        ["A", "B"],
        extra={"C": am.State(add=["D"]), "B": am.State(require=["A"])},
        log_level=3,
        id="logid",
    )
    caplog.clear()
    m.set(["C"])
    lines = log_lines(caplog)
    assert "[logid] [set] C" in lines
    assert "[logid] [implied] D" in lines
    assert "[logid] [state] +C +D -A -B" in lines
    caplog.clear()
    m.remove("D", {"id": 7})
    assert "[logid] [remove] D (id=7)" in log_lines(caplog)
    caplog.clear()
    assert m.add("B") == CANCELED
    assert "[logid] [cancel:reject] B" in log_lines(caplog)
    assert not any(line.startswith("[logid] [state]") for line in log_lines(caplog))


def test_log_messages_cancel_self(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: a self-handler rejection logs [cancel:self]."""
    capture_logs(caplog)
    m = no_rels(["A"], log_level=3)
    m.bind_handlers(Recorder([], reject=["A_A"]))
    assert m.set(["A", "B"]) == CANCELED
    assert "[cancel:self] (A B) by A_A" in log_text(caplog)


def test_log_messages_auto(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: [auto] at level 3, [add:auto] at 4, [auto_] for the applied states."""
    capture_logs(caplog)
    schema = {"A": am.State(auto=True), "T": am.State()}
    m = machine(schema, log_level=3)
    m.add("T")
    text = log_text(caplog)
    assert "[auto] A" in text
    assert "[auto_] +A" in text
    assert "[add:auto]" not in text
    caplog.clear()
    m = machine(schema, log_level=4)
    m.add("T")
    assert "[add:auto] A" in log_text(caplog)


def test_log_messages_queue(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: the queue, de-duplication and postpone messages."""
    capture_logs(caplog)
    m = no_rels(log_level=3)

    def a_state(e: am.Event) -> object:
        e.machine.add("B")
        e.machine.add("C")
        e.machine.add("C")
        return None

    m.bind_handlers(Recorder([], hooks={"A_state": a_state}))
    caplog.clear()
    m.add("A")
    lines = [line.split("] ", 1)[1] for line in log_lines(caplog)]
    assert "[queue:add] A" in lines
    assert "[queue:add] B" in lines
    assert "[postpone] queue running (2 items)" in lines
    assert "[queue:skipped] Duplicate detected for [add] C" in lines


def test_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: level 2 shows changes but not operations."""
    capture_logs(caplog)
    m = no_rels(log_level=2)
    m.add("A")
    m.remove("B")
    text = log_text(caplog)
    assert "[state] +A" in text
    assert "[add]" not in text
    assert "[queue:add]" not in text


def test_log_import(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: an import logs [import] at level 2."""
    capture_logs(caplog)
    m1 = no_rels(["A"], id="imp", names=["A", "B", "C", "D", "Exception"])
    m2 = no_rels(id="imp", log_level=2)
    m2.import_(m1.export())
    assert "[import]" in log_text(caplog)


def test_log_messages_relations(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 10.10: [rel:remove] is level 3 for an active state, 4 otherwise; [reject]."""
    capture_logs(caplog)
    extra = {"C": am.State(remove=["D"]), "E": am.State(require=["D"])}
    schema = {n: am.State() for n in "ABDF"} | extra
    m = machine(schema, log_level=3)
    m.set(["C", "D"])
    assert "[rel:remove] D by C" not in log_text(caplog)
    m = machine(schema, log_level=4)
    m.set(["C", "D"])
    assert "[rel:remove] D by C" in log_text(caplog)
    caplog.clear()
    m = machine(schema, ["D"], log_level=3)
    m.add("C")
    assert "[rel:remove] D by C" in log_text(caplog)
    caplog.clear()
    m.add("E")
    assert "[reject] E(-D)" in log_text(caplog)
