# An online order as a state machine: the machine that examples/test_order_machine.py
# tests with asyncmachine.testing.
#
# It shows:
#   - a multi state (every added item activates Cart again; its handler counts them),
#   - negotiation: Cart_enter refuses items once checkout started, Paid_enter refuses
#     a payment that does not match the total, Cancelled_enter refuses to cancel a
#     shipped order,
#   - an auto state: Shipped activates by itself as soon as the order is Paid,
#   - `remove` relations: Cancelled ends the checkout, and Checkout ends Cancelled.
#
# Run it:   python examples/order_machine.py
# Test it:  pytest examples/test_order_machine.py
from __future__ import annotations

import asyncmachine as am

PRICES: dict[str, int] = {"tea": 4, "cake": 6}

SCHEMA: dict[str, am.State] = {
    # Each added item activates Cart again (multi): args {"item": "tea"}.
    "Cart": am.State(multi=True),
    # Checking out needs items and ends a cancellation.
    "Checkout": am.State(require=["Cart"], remove=["Cancelled"]),
    # Paying needs a checkout: args {"amount": <the total>}.
    "Paid": am.State(require=["Checkout"]),
    # Shipping happens by itself once the order is paid.
    "Shipped": am.State(auto=True, require=["Paid"]),
    # Cancelling ends the checkout and with it the payment (Paid requires Checkout).
    "Cancelled": am.State(remove=["Checkout"]),
}


class Order:
    """The handlers, and the order's data: items, payment, shipments."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.paid = 0
        self.shipments = 0

    def total(self) -> int:
        """The price of the items in the cart."""
        return sum(PRICES[i] for i in self.items)

    def Cart_enter(self, e: am.Event) -> bool:
        """Only known items, and only before checkout."""
        item = e.args.get("item")
        return item in PRICES and not e.machine.is_active("Checkout")

    def Cart_state(self, e: am.Event) -> None:
        item = e.args["item"]
        assert isinstance(item, str)
        self.items.append(item)

    def Cart_end(self, e: am.Event) -> None:
        self.items.clear()

    def Paid_enter(self, e: am.Event) -> bool:
        """The payment must match the total."""
        return e.args.get("amount") == self.total()

    def Paid_state(self, e: am.Event) -> None:
        amount = e.args["amount"]
        assert isinstance(amount, int)
        self.paid = amount

    def Paid_end(self, e: am.Event) -> None:
        self.paid = 0  # refunded

    def Shipped_state(self, e: am.Event) -> None:
        self.shipments += 1

    def Cancelled_enter(self, e: am.Event) -> bool:
        """A shipped order cannot be cancelled."""
        return not e.machine.is_active("Shipped")


def new_order() -> am.Machine:
    """A machine for one order, with a fresh :class:`Order` as its handlers."""
    return am.Machine(SCHEMA, handlers=Order(), id="order")


if __name__ == "__main__":
    mach = new_order()
    print("add tea: ", mach.add("Cart", {"item": "tea"}))
    print("add cake:", mach.add("Cart", {"item": "cake"}))
    print("add soup:", mach.add("Cart", {"item": "soup"}), "(not on the menu)")
    print("checkout:", mach.add("Checkout"))
    print("pay 5:   ", mach.add("Paid", {"amount": 5}), "(the total is 10)")
    print("pay 10:  ", mach.add("Paid", {"amount": 10}))
    print("cancel:  ", mach.add("Cancelled"), "(already shipped)")
    print(mach.string_all())
