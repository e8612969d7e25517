"""Typed schemas (``am.Schema``/``am.state``) and per-state argument models."""

from __future__ import annotations

from typing import assert_type

import anyio
import pytest
from pydantic import BaseModel

import asyncmachine as am


class BoilArgs(BaseModel):
    temp: int = 100
    reason: str


class Kettle(am.Schema):
    Water = am.state()
    Heating = am.state(require=[Water], remove="Cold")
    Boiling = am.state(require=[Heating], multi=True, args=BoilArgs)
    Cold = am.state()


class SmartKettle(Kettle):
    Wifi = am.state(add=[Kettle.Water])


def test_attributes_read_as_state_names() -> None:
    """On the class, declared states read as their names (str for mypy too)."""
    assert_type(Kettle.Water, str)
    assert Kettle.Water == "Water"
    assert Kettle.Boiling == "Boiling"
    assert Kettle.state_names() == ["Water", "Heating", "Boiling", "Cold"]


def test_schema_from_class() -> None:
    """Relations may name states by attribute or by string."""
    mach = am.Machine(Kettle)
    assert mach.state_names() == ["Boiling", "Cold", "Exception", "Heating", "Water"]
    assert mach.schema["Heating"] == am.State(require=["Water"], remove=["Cold"])
    assert mach.schema["Boiling"].multi
    mach.add(Kettle.Cold)
    mach.add([Kettle.Water, Kettle.Heating])
    assert mach.active_states() == ["Heating", "Water"]


def test_subclass_extends_parent_states() -> None:
    """A subclass inherits its parent's states and adds its own."""
    assert SmartKettle.state_names() == ["Water", "Heating", "Boiling", "Cold", "Wifi"]
    mach = am.Machine(SmartKettle)
    mach.add(SmartKettle.Wifi)
    assert mach.is_active(["Wifi", "Water"])
    assert "Wifi" not in Kettle.state_names()


def test_schema_class_cannot_be_instantiated() -> None:
    """Schemas are used as classes."""
    with pytest.raises(TypeError, match="pass the class itself"):
        Kettle()


def test_args_validated_before_queueing() -> None:
    """Bad args raise ArgsError and nothing happens; good ones are coerced."""
    seen: list[BoilArgs] = []

    class H:
        def Boiling_state(self, e: am.Event) -> None:
            seen.append(e.args_as(BoilArgs))

    mach = am.Machine(Kettle, handlers=H())
    mach.add([Kettle.Water, Kettle.Heating])
    before = mach.clock()
    with pytest.raises(am.ArgsError, match="'Boiling'") as info:
        mach.add(Kettle.Boiling, {"temp": "hot", "reason": "tea"})
    assert isinstance(info.value, ValueError)
    with pytest.raises(am.ArgsError):
        mach.add(Kettle.Boiling)  # `reason` is required
    assert mach.clock() == before
    assert mach.queue_len() == 0
    assert mach.add(Kettle.Boiling, {"temp": "95", "reason": "tea"}) == (
        am.Result.EXECUTED
    )
    assert seen == [BoilArgs(temp=95, reason="tea")]
    assert mach.add(Kettle.Boiling, {"reason": "again"}) == am.Result.EXECUTED
    assert seen[-1].temp == 100  # the default reached the handler


def test_remove_and_implied_states_are_not_validated() -> None:
    """Only add/set calling a state validate; remove never does."""
    mach = am.Machine(Kettle)
    mach.add([Kettle.Water, Kettle.Heating])
    mach.add(Kettle.Boiling, {"reason": "x"})
    assert mach.remove(Kettle.Boiling) == am.Result.EXECUTED


def test_args_model_must_be_a_model() -> None:
    """args= rejects classes that are not pydantic models."""
    with pytest.raises(TypeError, match="pydantic model"):
        am.state(args=dict)


@pytest.mark.anyio
async def test_when_args_with_a_model_instance() -> None:
    """when_args accepts a model; only the fields set on it are compared."""
    mach = am.Machine(Kettle)
    mach.add([Kettle.Water, Kettle.Heating])
    done: list[bool] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(
                    await mach.when_args(Kettle.Boiling, BoilArgs(reason="tea"))
                )

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.add(Kettle.Boiling, {"reason": "coffee"})
            await anyio.sleep(0.01)
            assert done == []
            mach.add(Kettle.Boiling, {"reason": "tea", "temp": 90})
    assert done == [True]
