"""E2B's memory pause through the official `e2b` Python SDK: `pause()` freezes the sandbox (its
processes and files stay, it is listed as paused, commands are refused), a second `pause()` says
False (409), and `Sandbox.connect` resumes it with everything where it was."""

import time

import pytest
from e2b import Sandbox, SandboxException
from e2b.api.client.models import SandboxState
from e2b.sandbox.sandbox_api import SandboxQuery


def counter(s):
    return int(s.files.read("/tmp/count").strip())


def test_pause_freezes_and_connect_resumes(sandboxes):
    s = sandboxes()
    s.files.write("/tmp/kept.txt", "kept")
    s.commands.run("i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done", background=True)
    time.sleep(0.5)
    before = counter(s)
    assert s.pause() is True
    assert s.pause() is False
    assert s.get_info().state.value == "paused"
    listed = Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED])).next_items()
    assert any(x.sandbox_id == s.sandbox_id for x in listed)
    with pytest.raises(Exception, match="paused"):
        s.commands.run("echo no")
    time.sleep(3)
    back = Sandbox.connect(s.sandbox_id)
    assert back.get_info().state.value == "running"
    after = counter(back)
    assert before <= after < before + 20, (before, after)
    assert back.files.read("/tmp/kept.txt") == "kept"
    time.sleep(0.5)
    assert counter(back) > after


def test_pause_of_an_unknown_sandbox_is_not_found():
    with pytest.raises(SandboxException):
        Sandbox.pause("a" * 20)


def test_filesystem_pause_keeps_the_disk_and_connect_boots_it_again(sandboxes):
    s = sandboxes()
    s.files.write("/home/user/kept.txt", "kept on disk")
    s.commands.run("sleep 600", background=True)
    assert s.pause(keep_memory=False) is True
    assert s.get_info().state.value == "paused"
    with pytest.raises(Exception, match="paused"):
        s.commands.run("echo no")
    back = Sandbox.connect(s.sandbox_id)
    assert back.sandbox_id == s.sandbox_id
    assert back.files.read("/home/user/kept.txt") == "kept on disk"
    assert "sleep 600" not in back.commands.run("ps -eo args").stdout


def test_a_pause_on_timeout_is_refused_not_ignored():
    with pytest.raises(Exception, match="not built in brig yet"):
        Sandbox.create(lifecycle={"on_timeout": "pause"})
