# A property-based test of examples/order_machine.py with asyncmachine.testing.
#
# Hypothesis runs random mutations on a fresh order machine (plus the rules below),
# checks every invariant asyncmachine guarantees after each step, and the order's own
# invariants (the @invariant methods). On a failure it prints the shortest run it
# found, also as plain calls on the machine.
#
# Run it:  pytest examples/test_order_machine.py
#    or:   python examples/test_order_machine.py
from __future__ import annotations

from hypothesis import settings, strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test
from order_machine import PRICES, SCHEMA, Order

from asyncmachine.testing import MachineRules

ITEMS = st.sampled_from([*PRICES, "soup"])  # soup is not on the menu


class OrderRules(MachineRules):
    """Random orders: any mutation, plus the steps a real customer takes."""

    schema = SCHEMA
    handlers = Order  # a class: a fresh Order for every run
    handler_obj: Order  # the Order of this run (the annotation is for mypy)
    # args for the random mutations: sometimes an item, sometimes an amount
    mutation_args = st.fixed_dictionaries(
        {}, optional={"item": ITEMS, "amount": st.integers(0, 30)}
    )

    @rule(item=ITEMS)
    def add_item(self, item: str) -> None:
        self.mach.add("Cart", {"item": item})

    @rule()
    def checkout(self) -> None:
        self.mach.add("Checkout")

    @rule(exact=st.booleans())
    def pay(self, exact: bool) -> None:
        total = self.handler_obj.total()
        self.mach.add("Paid", {"amount": total if exact else total + 1})

    @invariant()
    def shipped_only_when_paid_in_full(self) -> None:
        if self.mach.is_active("Shipped"):
            paid, total = self.handler_obj.paid, self.handler_obj.total()
            assert paid == total > 0, f"shipped, but paid {paid} of {total}"

    @invariant()
    def payment_kept_only_while_paid(self) -> None:
        paid = self.handler_obj.paid
        assert (paid > 0) == self.mach.is_active("Paid"), f"paid {paid} ({self.mach})"

    @invariant()
    def cart_lists_items_while_active(self) -> None:
        items = self.handler_obj.items
        assert bool(items) == self.mach.is_active("Cart"), f"{items} ({self.mach})"


SETTINGS = settings(max_examples=30, stateful_step_count=30, deadline=None)

# pytest collects this unittest.TestCase
TestOrderMachine = OrderRules.TestCase
TestOrderMachine.settings = SETTINGS

if __name__ == "__main__":
    run_state_machine_as_test(OrderRules, settings=SETTINGS)
    print("order machine: 30 random runs of 30 steps, every invariant held")
