"""AsyncSandbox (the official `e2b` Python SDK's asyncio API). No pytest-asyncio: each test runs
its coroutine with asyncio.run (sdkutil.run_async), and kills its sandboxes in `finally`."""

import asyncio
import os
import uuid

import pytest
from e2b import (
    AsyncSandbox,
    CommandExitException,
    FileNotFoundException,
    FilesystemEventType,
    PtySize,
    SandboxNotFoundException,
    SandboxQuery,
)

from sdkutil import LIFETIME, run_async


async def _kill_all(sandboxes):
    for s in sandboxes:
        try:
            await s.kill()
        except Exception:
            pass


def test_async_create_commands_files_kill():
    async def body():
        tag = uuid.uuid4().hex
        s = await AsyncSandbox.create(timeout=LIFETIME, metadata={"async": tag}, envs={"GREETING": "async-hello"})
        try:
            info = await s.get_info()
            assert info.sandbox_id == s.sandbox_id and info.metadata == {"async": tag}
            assert info.name == "base"
            assert await s.is_running() is True

            chunks = []
            r = await s.commands.run("echo $GREETING; sleep 0.3; echo two", on_stdout=chunks.append)
            assert r.stdout == "async-hello\ntwo\n"
            assert "".join(chunks) == r.stdout and len(chunks) >= 2, chunks
            with pytest.raises(CommandExitException) as e:
                await s.commands.run("echo nope >&2; exit 3")
            assert (e.value.exit_code, e.value.stderr) == (3, "nope\n")
            assert (await s.commands.run("id -un", user="root", cwd="/tmp")).stdout == "root\n"

            await s.files.write("/home/user/a/async.txt", "written async")
            assert await s.files.read("/home/user/a/async.txt") == "written async"
            assert (await s.commands.run("cat /home/user/a/async.txt")).stdout == "written async"
            data = os.urandom(1024 * 1024)
            await s.files.write("/home/user/a/blob.bin", data)
            assert bytes(await s.files.read("/home/user/a/blob.bin", format="bytes")) == data
            assert sorted(e.name for e in await s.files.list("/home/user/a")) == ["async.txt", "blob.bin"]
            with pytest.raises(FileNotFoundException):
                await s.files.read("/home/user/a/missing")

            listed = await AsyncSandbox.list(query=SandboxQuery(metadata={"async": tag})).next_items()
            assert [x.sandbox_id for x in listed] == [s.sandbox_id]
            again = await AsyncSandbox.connect(s.sandbox_id)
            assert await again.files.read("/home/user/a/async.txt") == "written async"
        finally:
            killed = await s.kill()
        assert killed is True
        assert await s.is_running() is False
        with pytest.raises(SandboxNotFoundException):
            await AsyncSandbox.connect(s.sandbox_id)

    run_async(body())


def test_async_background_stdin_and_kill():
    async def body():
        s = await AsyncSandbox.create(timeout=LIFETIME)
        try:
            h = await s.commands.run("cat", background=True, stdin=True)
            await s.commands.send_stdin(h.pid, "one\n")
            await h.send_stdin("two\n")
            await h.close_stdin()
            assert (await h.wait()).stdout == "one\ntwo\n"

            long = await s.commands.run("sleep 100", background=True)
            assert long.pid in [p.pid for p in await s.commands.list()]
            assert await long.kill() is True
            with pytest.raises(CommandExitException):
                await long.wait()
            assert (await s.commands.run(f"test -e /proc/{long.pid} || echo gone")).stdout == "gone\n"
            assert await s.commands.kill(999999) is False
        finally:
            await s.kill()

    run_async(body())


def test_async_pty_on_data_resize_kill():
    async def body():
        s = await AsyncSandbox.create(timeout=LIFETIME)
        try:
            out = bytearray()
            term = await s.pty.create(PtySize(rows=24, cols=80), on_data=out.extend)
            await s.pty.resize(term.pid, PtySize(rows=40, cols=132))
            await s.pty.send_stdin(term.pid, b"stty size; echo marker-$((6*7))\n")
            # on_data delivers output while the terminal is still open.
            for _ in range(100):
                if b"marker-42" in out:
                    break
                await asyncio.sleep(0.05)
            text = out.decode(errors="replace")
            assert "40 132" in text and "marker-42" in text, text
            assert await s.pty.kill(term.pid) is True
            with pytest.raises(CommandExitException):
                await term.wait()
        finally:
            await s.kill()

    run_async(body())


def test_async_watch_dir_streams_events():
    async def body():
        s = await AsyncSandbox.create(timeout=LIFETIME)
        try:
            await s.files.make_dir("/home/user/aw")
            events = []
            exits = []
            handle = await s.files.watch_dir("/home/user/aw", events.append, on_exit=exits.append, recursive=True)
            try:
                await s.commands.run("echo hi > /home/user/aw/new.txt; mkdir /home/user/aw/sub; echo x > /home/user/aw/sub/inner")
                for _ in range(100):
                    if any(e.name == "sub/inner" for e in events):
                        break
                    await asyncio.sleep(0.05)
            finally:
                await handle.stop()
            seen = [(e.name, e.type) for e in events]
            assert ("new.txt", FilesystemEventType.CREATE) in seen, seen
            assert any(name == "sub/inner" for name, _ in seen), seen
            assert exits == [None], exits
        finally:
            await s.kill()

    run_async(body())


def test_async_concurrent_sandboxes():
    async def body():
        created = await asyncio.gather(*(AsyncSandbox.create(timeout=LIFETIME) for _ in range(3)))
        try:
            assert len({s.sandbox_id for s in created}) == 3
            results = await asyncio.gather(*(s.commands.run(f"sleep 0.5; echo {i}") for i, s in enumerate(created)))
            assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
        finally:
            await _kill_all(created)

    run_async(body())
