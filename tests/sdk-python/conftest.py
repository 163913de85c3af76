"""Shared fixtures for the official E2B Python SDK suite (run by tests/sdk-python/run.sh).

run.sh starts a fresh `brig serve` and exports E2B_API_KEY / E2B_API_URL / E2B_SANDBOX_URL, plus
BRIG_BIN and BRIG_STATE for the test that mints a key through the CLI. Every sandbox a test
creates is killed when the test ends, pass or fail.
"""

import os

import pytest
from e2b import Sandbox

from sdkutil import LIFETIME


@pytest.fixture(scope="session", autouse=True)
def _environment():
    for name in ("E2B_API_KEY", "E2B_API_URL", "E2B_SANDBOX_URL"):
        assert os.environ.get(name), f"{name} is not set: run this suite with tests/sdk-python/run.sh"
    # E2B_DEBUG is the SDK's local-development mode: create/connect/kill skip the API entirely.
    assert not os.environ.get("E2B_DEBUG"), "E2B_DEBUG must not be set"


@pytest.fixture
def sandboxes():
    """A factory: sandboxes(cls=Sandbox, **create_kwargs) -> a new sandbox, killed at teardown."""
    created = []

    def make(cls=Sandbox, **kwargs):
        kwargs.setdefault("timeout", LIFETIME)
        s = cls.create(**kwargs)
        created.append(s)
        return s

    yield make
    for s in created:
        try:
            s.kill()
        except Exception:
            pass


@pytest.fixture
def sandbox(sandboxes):
    """A sandbox of the default template (the SDK asks for `base`)."""
    return sandboxes()
