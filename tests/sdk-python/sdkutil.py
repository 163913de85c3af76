"""Helpers shared by the test modules (imported by name: pytest puts this directory on sys.path)."""

import asyncio
import time

# Lifetime of the sandboxes the tests create, in seconds: long enough for any one test, short
# enough that nothing outlives a crashed run for long.
LIFETIME = 180


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Polls predicate() until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def run_async(coro, timeout=240):
    """Runs an AsyncSandbox test body on a fresh event loop, bounded by `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
