# A tour of asyncmachine's synchronous core, told as the life of an electric kettle.
#
# It shows:
#   - a schema with `require`, `add` and `remove` relations,
#   - an auto state (Heating starts by itself once Water and Power are both active),
#   - a multi state (Beep can be activated again while active: its tick grows by 2),
#   - handlers: `Water_enter` rejects too much water, `*_state` handlers react, and the
#     pair handler `Heating_Boiling` runs when Boiling replaces Heating,
#   - the clock (`string_all()` prints every state with its tick; odd = active),
#   - the queue (a mutation made inside a handler returns a queued Result),
#   - an exception raised by a handler, turned into the Exception state.
#
# Run it:   python examples/quickstart.py
# Then try:
#   - pour 1.5 litres instead of 1 (`Water_enter` rejects more than CAPACITY),
#   - remove `auto=True` from Heating and see that nothing boils any more,
#   - make Beep a normal state (no `multi=True`) and watch its tick stay at 1,
#   - set `log_level=3` on the machine (logging is configured below) to see the
#     machine's own account of every mutation.
from __future__ import annotations

import logging
import sys

import asyncmachine as am

CAPACITY = 1.7  # litres

SCHEMA: dict[str, am.State] = {
    # Water and Empty remove each other: the state you add wins.
    "Empty": am.State(remove=["Water"]),
    "Water": am.State(remove=["Empty"]),
    # Plugging in also switches the light on; the light needs power.
    "Power": am.State(add=["Light"]),
    "Light": am.State(require=["Power"]),
    # Heating starts by itself whenever Water and Power are both active.
    "Heating": am.State(auto=True, require=["Water", "Power"]),
    # Boiling stops the heating.
    "Boiling": am.State(require=["Water"], remove=["Heating"]),
    # Each beep activates Beep again.
    "Beep": am.State(multi=True),
    # Pouring needs water; the kettle refuses to pour while boiling (see below).
    "Pouring": am.State(require=["Water"]),
}


class Kettle:
    """The handlers. Names say when they run: <State>_enter, <State>_state, ..."""

    def Water_enter(self, e: am.Event) -> bool:
        """Negotiation: returning False rejects the whole mutation."""
        litres = e.args.get("litres", 0)
        if not isinstance(litres, int | float) or litres > CAPACITY:
            print(f"  Water_enter: {litres} l does not fit, rejected")
            return False
        print(f"  Water_enter: {litres} l accepted")
        return True

    def Heating_state(self, e: am.Event) -> None:
        """Final: Heating is active. Pretend the water reaches 100 degrees at once."""
        result = e.machine.add("Boiling", {"temp": 100})
        # We are inside a transition, so the mutation is queued, not run: the result
        # is the queue tick at which it will run.
        print(
            f"  Heating_state: add(Boiling) -> {result!r}, queued: {result.is_queued}"
        )

    def Heating_Boiling(self, e: am.Event) -> None:
        """Pair handler: Heating was active and Boiling is in the target."""
        print("  Heating_Boiling: thermostat clicks, heating goes off")

    def Boiling_state(self, e: am.Event) -> None:
        print(f"  Boiling_state: boiling at {e.args['temp']} degrees")
        e.machine.add("Beep")
        e.machine.add("Beep")  # Beep is multi: not de-duplicated, queued twice

    def Beep_state(self, e: am.Event) -> None:
        print(f"  Beep_state: beep! (Beep tick {e.machine.tick('Beep')})")

    def Pouring_state(self, e: am.Event) -> None:
        if e.machine.is_active("Boiling"):
            raise RuntimeError("too hot to pour")
        print("  Pouring_state: pouring a cup, the kettle is empty now")
        e.machine.add("Empty")

    def Exception_state(self, e: am.Event) -> None:
        print(f"  Exception_state: {e.args['err']!r}")


def show(result: am.Result, mach: am.Machine) -> None:
    """Print a mutation's result, then the active (...) and inactive [...] states."""
    print(f"  -> {result}\n  {mach.string_all()}\n")


def main() -> None:
    logging.basicConfig(
        level=logging.DEBUG, format="  log: %(message)s", stream=sys.stdout
    )
    mach = am.Machine(SCHEMA, handlers=Kettle(), id="kettle")
    print("A new kettle. string_all() shows active states in (), inactive ones in [],")
    print("each with its tick. Every tick is 0, nothing is active:")
    print(f"  {mach.string_all()}\n")

    print("add('Empty'):")
    show(mach.add("Empty"), mach)

    print("add('Power'): Power adds Light (Heating is auto but needs Water):")
    show(mach.add("Power"), mach)

    print("add('Water', {'litres': 3}): the _enter handler rejects it:")
    show(mach.add("Water", {"litres": 3}), mach)

    print("add('Water', {'litres': 1}): Water removes Empty, then a chain reaction:")
    show(mach.add("Water", {"litres": 1}), mach)
    print(
        "  Heating went 0 -> 1 -> 2, Boiling is active, Beep was activated twice"
        " (tick 3).\n"
    )

    print("add('Pouring') while boiling: Pouring_state raises:")
    show(mach.add("Pouring"), mach)
    print("  Pouring was activated, then rolled back (tick 2); Exception is active.")
    print(f"  mach.err() = {mach.err()!r}, is_err() = {mach.is_err()}\n")

    print("remove('Power'): Light requires Power and goes too:")
    show(mach.remove("Power"), mach)

    print("remove(['Exception', 'Boiling']): Heating is auto, but needs Power:")
    show(mach.remove(["Exception", "Boiling"]), mach)

    print("add('Pouring') again, now that it is not boiling:")
    show(mach.add("Pouring"), mach)
    print("  'executed' is the result of add('Pouring') itself. The add('Empty') that")
    print("  Pouring_state queued ran after it: Empty removed Water, and Pouring lost")
    print("  its requirement.\n")

    print("Ticks count activations and deactivations; odd means active:")
    for name in ["Pouring", "Beep"]:
        print(f"  {name}: tick {mach.tick(name)}, active: {mach.is_active(name)}")


if __name__ == "__main__":
    main()
