"""Sandbox lifecycle with the official `e2b` Python SDK: create (template, metadata, envs,
timeout), get_info, list with filters and paging, connect, set_timeout and expiry, kill, API
keys, and the errors the SDK maps from brig's responses."""

import os
import re
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from e2b import (
    AuthenticationException,
    NotFoundException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxQuery,
    SandboxState,
)

from sdkutil import LIFETIME, wait_until

ID = re.compile(r"^[a-z0-9]{20}$")
SKEW = timedelta(seconds=5)


def now():
    return datetime.now(timezone.utc)


def test_create_with_metadata_envs_and_get_info(sandboxes):
    before = now()
    s = sandboxes(metadata={"suite": "sdk-python", "run": "1"}, envs={"GREETING": "hello"})
    assert ID.match(s.sandbox_id), s.sandbox_id
    info = s.get_info()
    assert info.sandbox_id == s.sandbox_id
    assert info.name == "base"  # the SDK's default template
    assert info.template_id
    assert info.metadata == {"suite": "sdk-python", "run": "1"}
    assert info.state == SandboxState.RUNNING
    assert info.cpu_count >= 1 and info.memory_mb > 0, info
    assert info.envd_version
    # Start and end times: the start is now, the end is start + the requested lifetime.
    assert before - SKEW <= info.started_at <= now() + SKEW, (before, info.started_at)
    lifetime = (info.end_at - info.started_at).total_seconds()
    assert abs(lifetime - LIFETIME) <= 5, lifetime
    # The env var given at create is in the sandbox's processes.
    assert s.commands.run("echo $GREETING").stdout == "hello\n"
    assert s.commands.run("env").stdout.count("GREETING=hello") == 1
    assert s.is_running() is True
    # Sandbox.get_info(id) is the same information.
    again = Sandbox.get_info(s.sandbox_id)
    assert (again.sandbox_id, again.metadata, again.name) == (s.sandbox_id, info.metadata, "base")


def test_create_from_template_python3(sandboxes):
    s = sandboxes(template="python3")
    info = s.get_info()
    assert info.name == "python3"
    r = s.commands.run("python3 -c 'import sys; print(sys.version_info[0], sys.executable)'")
    assert r.stdout.startswith("3 /"), r.stdout
    # The template id names the template: the same for its sandboxes, another for another
    # template, and usable in place of the name.
    base = sandboxes().get_info()
    assert base.template_id and base.template_id != info.template_id
    other = sandboxes(template=info.template_id)
    assert (other.get_info().name, other.get_info().template_id) == ("python3", info.template_id)
    # Each sandbox has its own filesystem: a file written in one is not in another.
    s.files.write("/home/user/only-here.txt", "x")
    assert s.files.exists("/home/user/only-here.txt") is True
    assert other.files.exists("/home/user/only-here.txt") is False


def test_create_timeout_sets_end_time(sandboxes):
    s = sandboxes(timeout=40)
    info = s.get_info()
    lifetime = (info.end_at - info.started_at).total_seconds()
    assert 35 <= lifetime <= 45, lifetime
    assert 30 <= (info.end_at - now()).total_seconds() <= 45


def test_list_with_metadata_filter_and_paging(sandboxes):
    tag = uuid.uuid4().hex
    ids = {sandboxes(metadata={"page": tag, "i": str(i)}).sandbox_id for i in range(3)}
    paginator = Sandbox.list(query=SandboxQuery(metadata={"page": tag}), limit=2)
    assert paginator.has_next is True
    first = paginator.next_items()
    assert len(first) == 2, first
    assert paginator.has_next is True
    second = paginator.next_items()
    assert len(second) == 1, second
    assert paginator.has_next is False
    listed = first + second
    assert {x.sandbox_id for x in listed} == ids
    for x in listed:
        assert x.metadata["page"] == tag
        assert x.state == SandboxState.RUNNING
        assert x.name == "base"
        assert x.started_at < x.end_at
    one = Sandbox.list(query=SandboxQuery(metadata={"page": tag, "i": "1"})).next_items()
    assert len(one) == 1 and one[0].metadata == {"page": tag, "i": "1"}, one
    running = Sandbox.list(query=SandboxQuery(metadata={"page": tag}, state=[SandboxState.RUNNING])).next_items()
    assert {x.sandbox_id for x in running} == ids
    none = Sandbox.list(query=SandboxQuery(metadata={"page": "no-such-" + tag})).next_items()
    assert none == []


def test_connect_set_timeout_and_expiry(sandboxes):
    s = sandboxes()
    s.files.write("/home/user/marker.txt", "same sandbox")
    # connect() also sets the timeout (300 s unless given) when that is longer, so it comes first.
    again = Sandbox.connect(s.sandbox_id)
    assert again.sandbox_id == s.sandbox_id
    assert again.commands.run("cat /home/user/marker.txt").stdout == "same sandbox"
    assert (s.get_info().end_at - now()).total_seconds() > 200
    s.set_timeout(600)
    assert 590 <= (s.get_info().end_at - now()).total_seconds() <= 605
    s.set_timeout(3)
    assert (s.get_info().end_at - now()).total_seconds() < 5
    # The sandbox ends on its own about 3 s later.
    assert wait_until(lambda: not s.is_running(), timeout=15, interval=0.5), "still running after its timeout"
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(s.sandbox_id)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(s.sandbox_id)


def test_kill_and_kill_of_unknown_id(sandboxes):
    s = sandboxes(metadata={"kill": uuid.uuid4().hex})
    assert s.commands.run("echo alive").stdout == "alive\n"
    assert s.kill() is True
    assert s.is_running() is False
    with pytest.raises(SandboxNotFoundException):
        s.get_info()
    assert s.kill() is False
    assert Sandbox.kill("zzzzzzzzzzzzzzzzzzzz") is False


def test_killed_sandbox_is_not_listed(sandboxes):
    tag = uuid.uuid4().hex
    s = sandboxes(metadata={"gone": tag})
    assert [x.sandbox_id for x in Sandbox.list(query=SandboxQuery(metadata={"gone": tag})).next_items()] == [s.sandbox_id]
    assert Sandbox.kill(s.sandbox_id) is True
    assert Sandbox.list(query=SandboxQuery(metadata={"gone": tag})).next_items() == []


def test_context_manager_kills_on_exit():
    with Sandbox.create(timeout=LIFETIME) as s:
        assert s.commands.run("echo inside").stdout == "inside\n"
        sid = s.sandbox_id
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(sid)


def test_connect_to_unknown_id_is_not_found():
    with pytest.raises(SandboxNotFoundException) as e:
        Sandbox.connect("zzzzzzzzzzzzzzzzzzzz")
    assert isinstance(e.value, NotFoundException)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info("zzzzzzzzzzzzzzzzzzzz")
    with pytest.raises(SandboxNotFoundException):
        Sandbox.set_timeout("zzzzzzzzzzzzzzzzzzzz", 60)


def test_unknown_template_is_an_error():
    with pytest.raises(SandboxException) as e:
        s = Sandbox.create(template="no-such-template-" + uuid.uuid4().hex[:8], timeout=30)
        s.kill()
    assert "404" in str(e.value), str(e.value)


def test_wrong_api_key_is_refused():
    wrong = "e2b_" + "0" * 40
    with pytest.raises(AuthenticationException):
        s = Sandbox.create(api_key=wrong, timeout=30)
        s.kill()
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key=wrong).next_items()


# brig mints keys of E2B's shape, which the Python SDK checks before it sends anything.
def test_key_created_with_the_cli_works_with_the_sdk():
    brig, state = os.environ["BRIG_BIN"], os.environ["BRIG_STATE"]
    out = subprocess.run(
        [brig, "--state-dir", state, "key", "create", "--name", "sdk-python"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert re.fullmatch(r"e2b_[0-9a-f]{40}", key), f"the key is not e2b_ + 40 hex: {key[:8]}..."
    tag = uuid.uuid4().hex
    s = Sandbox.create(api_key=key, timeout=60, metadata={"key": tag})
    try:
        assert s.commands.run("echo with-cli-key").stdout == "with-cli-key\n"
        listed = Sandbox.list(api_key=key, query=SandboxQuery(metadata={"key": tag})).next_items()
        assert [x.sandbox_id for x in listed] == [s.sandbox_id]
    finally:
        s.kill()
