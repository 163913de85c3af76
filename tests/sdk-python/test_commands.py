"""commands.* and pty.* with the official `e2b` Python SDK (sync API). Commands use only what
every template has (bash and coreutils; processes are looked at through /proc)."""

import time

import pytest
from e2b import CommandExitException, PtySize

from sdkutil import wait_until


def test_output_and_exit_codes(sandbox):
    r = sandbox.commands.run("echo out; echo err >&2")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "out\n", "err\n")
    with pytest.raises(CommandExitException) as e:
        sandbox.commands.run("echo before; echo why >&2; exit 7")
    assert e.value.exit_code == 7
    assert e.value.stdout == "before\n"
    assert e.value.stderr == "why\n"
    with pytest.raises(CommandExitException) as e:
        sandbox.commands.run("no-such-command-here")
    assert e.value.exit_code == 127
    assert "not found" in e.value.stderr


def test_streaming_callbacks(sandbox):
    out, err = [], []
    r = sandbox.commands.run(
        "for i in 1 2 3; do echo $i; echo e$i >&2; sleep 0.3; done",
        on_stdout=lambda d: out.append((time.monotonic(), d)),
        on_stderr=lambda d: err.append((time.monotonic(), d)),
    )
    assert "".join(d for _, d in out) == "1\n2\n3\n" == r.stdout
    assert "".join(d for _, d in err) == "e1\ne2\ne3\n" == r.stderr
    # Output arrives as it is produced, not all at the end.
    assert len(out) >= 2, out
    assert out[-1][0] - out[0][0] >= 0.3, out


def test_cwd_envs_and_user_per_command(sandbox):
    assert sandbox.commands.run("pwd").stdout == "/home/user\n"
    assert sandbox.files.make_dir("/home/user/work") is True
    assert sandbox.commands.run("pwd", cwd="/home/user/work").stdout == "/home/user/work\n"
    assert sandbox.commands.run("touch here", cwd="/home/user/work").exit_code == 0
    assert sandbox.files.exists("/home/user/work/here") is True
    assert sandbox.commands.run("echo $A-$B", envs={"A": "1", "B": "2"}).stdout == "1-2\n"
    # Per-command env vars do not outlive their command.
    assert sandbox.commands.run("echo \"[$A]\"").stdout == "[]\n"
    assert sandbox.commands.run("id -u; id -un").stdout == "1000\nuser\n"
    assert sandbox.commands.run("id -u; id -un", user="root").stdout == "0\nroot\n"
    assert sandbox.commands.run("echo $HOME", user="root").stdout == "/root\n"
    # A file made as root belongs to root.
    sandbox.commands.run("touch /home/user/root-made", user="root")
    assert sandbox.files.get_info("/home/user/root-made").owner == "root"


def test_fast_commands_lose_no_output(sandbox):
    for i in range(20):
        assert sandbox.commands.run(f"echo {i}").stdout == f"{i}\n"


def test_background_wait_list_and_kill(sandbox):
    bg = sandbox.commands.run("sleep 0.5; echo done", background=True)
    assert bg.pid > 0
    listed = sandbox.commands.list()
    mine = [p for p in listed if p.pid == bg.pid]
    assert mine and "sleep 0.5" in " ".join(mine[0].args), listed
    res = bg.wait()
    assert (res.exit_code, res.stdout) == (0, "done\n")

    chunks = []
    streamed = sandbox.commands.run("echo a; sleep 0.3; echo b", background=True)
    assert streamed.wait(on_stdout=chunks.append).stdout == "a\nb\n"
    assert "".join(chunks) == "a\nb\n"

    long = sandbox.commands.run("sleep 100", background=True)
    # The process is really there, seen from inside the sandbox.
    assert sandbox.commands.run(f"tr '\\0' ' ' < /proc/{long.pid}/cmdline").stdout.strip() == "sleep 100"
    assert long.kill() is True
    with pytest.raises(CommandExitException):
        long.wait()
    assert wait_until(lambda: sandbox.commands.run(f"test -e /proc/{long.pid} || echo gone").stdout == "gone\n", 5)
    assert long.pid not in [p.pid for p in sandbox.commands.list()]
    assert sandbox.commands.kill(999999) is False


def test_kill_through_commands_kill(sandbox):
    h = sandbox.commands.run("sleep 100", background=True)
    assert sandbox.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException):
        h.wait()


def test_stdin_send_and_close(sandbox):
    h = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.send_stdin(h.pid, "line one\n")
    h.send_stdin(b"line two\n")
    sandbox.commands.close_stdin(h.pid)
    r = h.wait()
    assert r.stdout == "line one\nline two\n"
    # Input goes to the process itself: count what it read.
    h = sandbox.commands.run("wc -c", background=True, stdin=True)
    h.send_stdin("x" * 100_000)
    h.close_stdin()
    assert h.wait().stdout.strip() == "100000"


def test_ten_megabytes_of_output(sandbox):
    r = sandbox.commands.run('head -c 10485760 /dev/zero | tr "\\0" a')
    assert len(r.stdout) == 10 * 1024 * 1024
    assert r.stdout.count("a") == 10 * 1024 * 1024


def test_silent_command_survives_until_it_ends(sandbox):
    r = sandbox.commands.run("sleep 8; echo woke", timeout=30)
    assert r.stdout == "woke\n"


def test_connect_to_a_running_command(sandbox):
    h = sandbox.commands.run("sleep 0.5; echo late", background=True)
    h.disconnect()
    again = sandbox.commands.connect(h.pid)
    assert again.pid == h.pid
    assert again.wait().stdout == "late\n"


def _collect_pty(handle):
    out = bytearray()
    try:
        handle.wait(on_pty=out.extend)
    except CommandExitException:
        pass
    return out.decode(errors="replace")


def test_pty_create_send_stdin_resize(sandbox):
    term = sandbox.pty.create(PtySize(rows=24, cols=80))
    assert term.pid > 0
    sandbox.pty.resize(term.pid, PtySize(rows=40, cols=132))
    sandbox.pty.send_stdin(term.pid, b"tty; stty size; echo marker-$((6*7)); exit\n")
    out = _collect_pty(term)
    assert "40 132" in out, out
    assert "marker-42" in out, out
    assert "/dev/pts/" in out, out


def test_pty_user_cwd_envs(sandbox):
    term = sandbox.pty.create(PtySize(rows=24, cols=80), cwd="/tmp", envs={"PTYVAR": "yes"})
    sandbox.pty.send_stdin(term.pid, b'echo "[$PTYVAR|$PWD|$TERM|$(id -un)]"; exit\n')
    out = _collect_pty(term)
    assert "[yes|/tmp|xterm-256color|user]" in out, out
    term = sandbox.pty.create(PtySize(rows=24, cols=80), user="root")
    sandbox.pty.send_stdin(term.pid, b'echo "[$(id -un)]"; exit\n')
    assert "[root]" in _collect_pty(term)


def test_pty_kill(sandbox):
    term = sandbox.pty.create(PtySize(rows=24, cols=80))
    listed = [p.pid for p in sandbox.commands.list()]
    assert term.pid in listed, listed
    assert sandbox.pty.kill(term.pid) is True
    with pytest.raises(CommandExitException):
        term.wait()
    assert wait_until(lambda: term.pid not in [p.pid for p in sandbox.commands.list()], 5)
    assert sandbox.pty.kill(term.pid) is False
