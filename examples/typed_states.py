# Typed schemas and typed args: a coffee machine whose states are class attributes.
#
# It shows:
#   - a schema written as a class (`am.Schema`), where every attribute reads as the
#     state's name, a `str`: IDEs complete `Brewer.Brewing` and mypy rejects a typo,
#   - relations naming states by attribute (`require=[Water]`) or by string,
#   - a subclass that extends its parent's states,
#   - an args model (pydantic) on a state: `add`/`set` validate their args before
#     anything is queued, bad args raise `am.ArgsError`, defaults are filled in,
#   - `e.args_as(Model)` in a handler, for typed access to the args,
#   - `await mach.when_args(state, Model(...))`, which compares only the fields that
#     were set on the model instance.
#
# Run it:   python examples/typed_states.py
# Then try:
#   - write `Brewer.Brewin` somewhere and run `mypy examples/typed_states.py`,
#   - add `"strength": 11` to the good order (BrewArgs allows 1 to 10): the
#     ArgsError is not caught there, so the script stops with it,
#   - wait for `BrewArgs(drink="tea", cups=1)` instead: now `cups` is compared too,
#     and it still matches, because validation filled in the default before the
#     handlers ran (`cups=2` would not match, and the wait would time out).
from __future__ import annotations

from typing import Literal

import anyio
from pydantic import BaseModel, Field, ValidationError

import asyncmachine as am


class BrewArgs(BaseModel):
    """The args of Brewing."""

    drink: Literal["coffee", "tea"]
    cups: int = Field(default=1, ge=1, le=4)
    strength: int = Field(default=5, ge=1, le=10)


class Brewer(am.Schema):
    """A coffee machine; each attribute reads as its state name."""

    Water = am.state()
    Power = am.state()
    Heating = am.state(require=[Water, Power])
    # Brewing is multi: every order activates it again and runs Brewing_state.
    Brewing = am.state(multi=True, require=[Heating], args=BrewArgs)
    Descaling = am.state(remove=["Brewing", Heating])


class SmartBrewer(Brewer):
    """Everything a Brewer has, plus an app that can switch it on."""

    App = am.state(add=[Brewer.Power])


class Handlers:
    """Handlers name states by string, like any handler method."""

    def Brewing_state(self, e: am.Event) -> None:
        order = e.args_as(BrewArgs)  # a BrewArgs: typed, validated, defaults in
        print(
            f"  Brewing_state: {order.cups} x {order.drink}, "
            f"strength {order.strength} (e.args = {e.args})"
        )


async def main() -> None:
    print("On the class, states read as their names:")
    print(f"  Brewer.Brewing = {Brewer.Brewing!r} (a {type(Brewer.Brewing).__name__})")
    print(f"  SmartBrewer.state_names() = {SmartBrewer.state_names()}")
    typo = "Brewin"
    try:
        getattr(Brewer, typo)
    except AttributeError as err:
        print(f"  a typo is an AttributeError (and a mypy error): {err}")

    mach = am.Machine(SmartBrewer, handlers=Handlers(), id="brewer")
    print(f"\nThe machine's schema: Heating = {mach.schema[Brewer.Heating]}")
    mach.add([SmartBrewer.App, Brewer.Water])
    mach.add(Brewer.Heating)
    print(f"add(App, Water), add(Heating): {mach}")

    print("\nBad args raise am.ArgsError before anything is queued:")
    before = mach.time()
    bad_orders: list[dict[str, object]] = [
        {"drink": "cocoa"},
        {"drink": "tea", "cups": 9},
        {},
    ]
    for bad in bad_orders:
        try:
            mach.add(Brewer.Brewing, bad)
        except am.ArgsError as err:
            # The pydantic ValidationError is the cause; str(err) has it all too.
            cause = err.__cause__
            assert isinstance(cause, ValidationError)
            why = "; ".join(f"{d['loc'][0]}: {d['msg']}" for d in cause.errors())
            print(f"  {bad} -> ArgsError ({why})")
    print(f"  nothing changed: {mach.time() == before}, queue_len = {mach.queue_len()}")

    print("\nGood args are validated and coerced; defaults are filled in:")
    mach.add(Brewer.Brewing, {"drink": "coffee", "cups": "2"})

    print("\nwhen_args with a model compares only the fields set on it (drink):")
    async with mach:

        async def orders() -> None:
            mach.add(Brewer.Brewing, {"drink": "coffee"})
            mach.add(Brewer.Brewing, {"drink": "tea", "strength": 3})
            mach.add(Brewer.Brewing, {"drink": "coffee", "cups": 3})

        mach.go(orders)
        with anyio.fail_after(1):
            ok = await mach.when_args(Brewer.Brewing, BrewArgs(drink="tea"))
        print(f"  when_args(Brewing, BrewArgs(drink='tea')) -> {ok}")

    print(f"\nBrewing was activated 4 times (tick {mach.tick(Brewer.Brewing)}).")
    mach.add(Brewer.Descaling)
    print(f"add(Descaling) removes Brewing and Heating: {mach}")


if __name__ == "__main__":
    anyio.run(main)
