"""
The pure core of asyncmachine: schema, relation resolution and ordering.

Nothing in this package does I/O, touches an event loop or imports anything outside the
standard library; ``tests/test_public_api.py`` enforces it.
"""
