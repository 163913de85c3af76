"""A sandbox's logs through the official `e2b` Python SDK's own API client (the generated
`get_sandboxes_sandbox_id_logs` and `get_v_2_sandboxes_sandbox_id_logs`, which parse the answers
into the SDK's models): its lifecycle and its processes are logged, filters work, and the log of
a killed sandbox is still there."""

from e2b.api.client.api.sandboxes import get_sandboxes_sandbox_id_logs, get_v_2_sandboxes_sandbox_id_logs
from e2b.api.client.models import LogLevel, LogsDirection, SandboxLogs, SandboxLogsV2Response
from e2b.connection_config import ConnectionConfig
from e2b.sandbox_sync.paginator import get_api_client


def client():
    return get_api_client(ConnectionConfig())


def messages(entries):
    return [e.message for e in entries]


def test_logs_tell_the_lifecycle_and_the_processes(sandboxes):
    s = sandboxes()
    try:
        s.commands.run("echo some-output; exit 3")
    except Exception:
        pass  # CommandExitException: the exit code is what the log must show
    s.set_timeout(300)

    v2 = get_v_2_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client())
    assert isinstance(v2, SandboxLogsV2Response), v2
    got = messages(v2.logs)
    assert got[0] == "Sandbox created", got
    assert "Process started" in got and "Process ended" in got and got[-1] == "Timeout set", got
    created = v2.logs[0]
    assert created.level == LogLevel.INFO
    assert created.fields["template"] == "base"
    ended = next(e for e in v2.logs if e.message == "Process ended")
    assert ended.fields["exit_code"] == "3" and ended.level == LogLevel.WARN
    started = next(e for e in v2.logs if e.message == "Process started")
    assert "echo some-output" in started.fields["cmd"]
    # Output is never logged.
    assert all("some-output" not in e.message for e in v2.logs)
    # Oldest first forward, newest first backward; timestamps in order.
    stamps = [e.timestamp for e in v2.logs]
    assert stamps == sorted(stamps)
    back = get_v_2_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client(), direction=LogsDirection.BACKWARD, limit=2)
    assert messages(back.logs) == list(reversed(got))[:2]
    # level is the least level shown; search a case-insensitive part of the message.
    warn = get_v_2_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client(), level=LogLevel.WARN)
    assert messages(warn.logs) == ["Process ended"]
    found = get_v_2_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client(), search="TIMEOUT")
    assert messages(found.logs) == ["Timeout set"]
    # A cursor after the last entry: nothing forward.
    last_ms = int(v2.logs[-1].timestamp.timestamp() * 1000) + 1
    assert get_v_2_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client(), cursor=last_ms).logs == []

    # v1: the same entries, and each as a JSON line.
    v1 = get_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client())
    assert isinstance(v1, SandboxLogs), v1
    assert messages(v1.log_entries) == got
    assert '"message":"Sandbox created"' in v1.logs[0].line

    # Killed: the log is still there, and says so.
    s.kill()
    after = get_v_2_sandboxes_sandbox_id_logs.sync(s.sandbox_id, client=client())
    assert messages(after.logs)[-1] == "Sandbox killed"


def test_logs_of_an_unknown_sandbox_and_bad_filters_are_client_errors():
    res = get_v_2_sandboxes_sandbox_id_logs.sync_detailed("a" * 20, client=client())
    assert res.status_code == 404
    import httpx
    from e2b.connection_config import ConnectionConfig as C

    c = C()
    with httpx.Client(base_url=c.api_url, headers={"X-API-KEY": c.api_key}) as h:
        assert h.get("/v2/sandboxes/" + "a" * 20 + "/logs", params={"direction": "sideways"}).status_code == 400
        assert h.get("/v2/sandboxes/" + "a" * 20 + "/logs", params={"level": "loud"}).status_code == 400
        assert h.get("/v2/sandboxes/" + "a" * 20 + "/logs", params={"cursor": "-1"}).status_code == 400
