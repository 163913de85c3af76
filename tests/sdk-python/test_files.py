"""files.* with the official `e2b` Python SDK (sync API), checked from inside the sandbox with
commands where it matters."""

import base64
import hashlib
import io
import os
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from e2b import (
    FileNotFoundException,
    FileType,
    FilesystemEventType,
    NotFoundException,
    SandboxException,
)


def test_write_and_read_text(sandbox):
    info = sandbox.files.write("/home/user/t/hello.txt", "hello world")
    assert (info.path, info.name, info.type) == ("/home/user/t/hello.txt", "hello.txt", FileType.FILE)
    assert sandbox.files.read("/home/user/t/hello.txt") == "hello world"
    # What is on the sandbox's disk, and who owns it (the default user; parents made for it).
    assert sandbox.commands.run("cat /home/user/t/hello.txt").stdout == "hello world"
    assert sandbox.commands.run("stat -c %U:%G /home/user/t/hello.txt /home/user/t").stdout == "user:user\nuser:user\n"
    # Overwrite, unicode; a file written inside is read back.
    sandbox.files.write("/home/user/t/hello.txt", "grüße ✓")
    assert sandbox.files.read("/home/user/t/hello.txt") == "grüße ✓"
    sandbox.commands.run("printf 'from inside\\n' > /home/user/t/inside.txt")
    assert sandbox.files.read("/home/user/t/inside.txt") == "from inside\n"
    # As root, into root's home.
    sandbox.files.write("/root/secret.txt", "root only", user="root")
    assert sandbox.commands.run("stat -c %U /root/secret.txt", user="root").stdout == "root\n"
    assert sandbox.files.read("/root/secret.txt", user="root") == "root only"


def test_five_megabytes_of_random_bytes_round_trip(sandbox):
    data = os.urandom(5 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    sandbox.files.write("/home/user/big.bin", data)  # multipart upload
    back = sandbox.files.read("/home/user/big.bin", format="bytes")
    assert isinstance(back, (bytes, bytearray))
    assert len(back) == len(data)
    assert bytes(back) == data
    inside = sandbox.commands.run("sha256sum /home/user/big.bin; stat -c %s /home/user/big.bin").stdout.split()
    assert inside[0] == digest and inside[-1] == str(len(data)), inside
    # A file-like object goes as an application/octet-stream upload; read it back as a stream.
    sandbox.files.write("/home/user/big2.bin", io.BytesIO(data))
    streamed = b"".join(sandbox.files.read("/home/user/big2.bin", format="stream"))
    assert streamed == data
    sums = sandbox.commands.run("sha256sum /home/user/big.bin /home/user/big2.bin").stdout.split()
    assert sums[0] == sums[2] == digest, sums


def test_write_multiple_files(sandbox):
    written = sandbox.files.write_files(
        [
            {"path": "/home/user/multi/a.txt", "data": "A"},
            {"path": "/home/user/multi/deep/b.txt", "data": b"B"},
            {"path": "/home/user/multi/c.bin", "data": bytes(range(256))},
        ]
    )
    assert sorted(w.path for w in written) == [
        "/home/user/multi/a.txt",
        "/home/user/multi/c.bin",
        "/home/user/multi/deep/b.txt",
    ]
    assert sandbox.files.read("/home/user/multi/deep/b.txt") == "B"
    assert bytes(sandbox.files.read("/home/user/multi/c.bin", format="bytes")) == bytes(range(256))
    assert sandbox.commands.run("cat /home/user/multi/a.txt /home/user/multi/deep/b.txt").stdout == "AB"


def test_list_with_depth(sandbox):
    sandbox.files.write_files(
        [
            {"path": "/home/user/l/a.txt", "data": "A"},
            {"path": "/home/user/l/deep/b.txt", "data": "BB"},
        ]
    )
    shallow = sandbox.files.list("/home/user/l")
    assert sorted(e.name for e in shallow) == ["a.txt", "deep"]
    by_name = {e.name: e for e in shallow}
    assert by_name["a.txt"].type == FileType.FILE and by_name["a.txt"].size == 1
    assert by_name["a.txt"].path == "/home/user/l/a.txt"
    assert by_name["deep"].type == FileType.DIR
    deep = sandbox.files.list("/home/user/l", depth=2)
    assert sorted(e.path for e in deep) == ["/home/user/l/a.txt", "/home/user/l/deep", "/home/user/l/deep/b.txt"]
    # The same as what ls sees.
    assert sandbox.commands.run("ls -A /home/user/l").stdout.split() == ["a.txt", "deep"]


def test_exists_and_get_info(sandbox):
    sandbox.files.write("/home/user/i/hello.txt", "hello world")
    assert sandbox.files.exists("/home/user/i/hello.txt") is True
    assert sandbox.files.exists("/home/user/i") is True
    assert sandbox.files.exists("/home/user/i/missing") is False
    info = sandbox.files.get_info("/home/user/i/hello.txt")
    assert info.type == FileType.FILE
    assert (info.name, info.path, info.size) == ("hello.txt", "/home/user/i/hello.txt", 11)
    assert (info.owner, info.group) == ("user", "user")
    mode = sandbox.commands.run("stat -c %a /home/user/i/hello.txt").stdout.strip()
    assert info.mode & 0o777 == int(mode, 8), (oct(info.mode), mode)
    assert len(info.permissions) == 10 and info.permissions.startswith("-"), info.permissions
    assert abs(info.modified_time - datetime.now(timezone.utc)) < timedelta(minutes=2), info.modified_time
    d = sandbox.files.get_info("/home/user/i")
    assert d.type == FileType.DIR and d.permissions.startswith("d")


# envd reports a symlink as the type of what it points to (FILE or DIR), with symlink_target
# set; FILE_TYPE_SYMLINK is not in this SDK's FileType enum at all.
def test_symlinks_are_reported_as_their_target(sandbox):
    sandbox.files.write("/home/user/s/hello.txt", "hello world")
    sandbox.commands.run("ln -s /home/user/s/hello.txt /home/user/s/link && ln -s /home/user/s /home/user/s/dirlink")
    link = sandbox.files.get_info("/home/user/s/link")
    assert (link.name, link.path, link.type) == ("link", "/home/user/s/link", FileType.FILE)
    assert link.symlink_target == "/home/user/s/hello.txt"
    assert sandbox.files.get_info("/home/user/s/dirlink").type == FileType.DIR
    listed = {e.name: e for e in sandbox.files.list("/home/user/s")}
    assert sorted(listed) == ["dirlink", "hello.txt", "link"], listed
    assert listed["link"].type == FileType.FILE and listed["link"].symlink_target == "/home/user/s/hello.txt"
    assert listed["dirlink"].type == FileType.DIR
    # The root directory has links too (/bin -> usr/bin on merged-/usr Debian).
    root = {e.name: e for e in sandbox.files.list("/")}
    assert "home" in root and root["home"].type == FileType.DIR
    if sandbox.commands.run("test -L /bin && echo link || true").stdout == "link\n":
        assert root["bin"].type == FileType.DIR and root["bin"].symlink_target == "/usr/bin", root["bin"]


def test_make_dir_rename_remove(sandbox):
    assert sandbox.files.make_dir("/home/user/d1/d2") is True
    assert sandbox.files.make_dir("/home/user/d1/d2") is False
    assert sandbox.commands.run("test -d /home/user/d1/d2 && stat -c %U /home/user/d1/d2").stdout == "user\n"
    sandbox.files.write("/home/user/d1/f.txt", "x")
    moved = sandbox.files.rename("/home/user/d1/f.txt", "/home/user/d3/g.txt")
    assert (moved.path, moved.name, moved.type) == ("/home/user/d3/g.txt", "g.txt", FileType.FILE)
    assert sandbox.files.exists("/home/user/d1/f.txt") is False
    assert sandbox.commands.run("cat /home/user/d3/g.txt").stdout == "x"
    sandbox.files.remove("/home/user/d1")
    assert sandbox.files.exists("/home/user/d1") is False
    assert sandbox.commands.run("test -e /home/user/d1 || echo gone").stdout == "gone\n"
    sandbox.files.remove("/home/user/d3/g.txt")
    assert sandbox.files.list("/home/user/d3") == []
    # Removing what does not exist is not an error.
    sandbox.files.remove("/home/user/never-existed")


def test_upload_metadata_is_stored_and_returned(sandbox):
    info = sandbox.files.write("/home/user/m.txt", "x", metadata={"Origin": "agent", "run": "7"})
    assert info.path == "/home/user/m.txt"
    assert sandbox.files.get_info("/home/user/m.txt").metadata == {"origin": "agent", "run": "7"}
    sandbox.files.write("/home/user/m.txt", "y", metadata={"only": "this"})
    assert sandbox.files.get_info("/home/user/m.txt").metadata == {"only": "this"}
    listed = {e.name: e for e in sandbox.files.list("/home/user")}
    assert listed["m.txt"].metadata == {"only": "this"}


def test_watch_dir(sandbox):
    sandbox.files.make_dir("/home/user/w")
    handle = sandbox.files.watch_dir("/home/user/w", recursive=True)
    events = []
    try:
        sandbox.commands.run("echo hi > /home/user/w/new.txt; mkdir /home/user/w/sub; echo x > /home/user/w/sub/inner")
        for _ in range(40):
            events += handle.get_new_events()
            if any(e.name == "sub/inner" for e in events) and any(e.name == "new.txt" for e in events):
                break
            time.sleep(0.1)
    finally:
        handle.stop()
    seen = [(e.name, e.type) for e in events]
    assert ("new.txt", FilesystemEventType.CREATE) in seen, seen
    assert any(e.name == "new.txt" and e.type == FilesystemEventType.WRITE for e in events), seen
    assert ("sub", FilesystemEventType.CREATE) in seen, seen
    assert any(name == "sub/inner" for name, _ in seen), seen
    with pytest.raises(SandboxException):
        handle.get_new_events()


def test_watch_dir_sees_removal_and_rename(sandbox):
    sandbox.files.write("/home/user/w2/a.txt", "a")
    handle = sandbox.files.watch_dir("/home/user/w2")
    events = []
    try:
        sandbox.commands.run("mv /home/user/w2/a.txt /home/user/w2/b.txt; rm /home/user/w2/b.txt")
        for _ in range(40):
            events += handle.get_new_events()
            if any(e.type == FilesystemEventType.REMOVE for e in events):
                break
            time.sleep(0.1)
    finally:
        handle.stop()
    seen = [(e.name, e.type) for e in events]
    assert ("a.txt", FilesystemEventType.RENAME) in seen, seen
    assert ("b.txt", FilesystemEventType.REMOVE) in seen, seen


def test_missing_files_raise_not_found(sandbox):
    with pytest.raises(FileNotFoundException) as e:
        sandbox.files.read("/home/user/nope.txt")
    assert isinstance(e.value, NotFoundException)
    with pytest.raises(FileNotFoundException):
        sandbox.files.get_info("/home/user/nope.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.list("/home/user/no-such-dir")
    with pytest.raises(FileNotFoundException):
        sandbox.files.rename("/home/user/nope.txt", "/home/user/other.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.watch_dir("/home/user/no-such-dir")


def test_signed_upload_and_download_urls(sandbox):
    # brig routes by these headers when E2B_SANDBOX_URL points at it (no per-sandbox host names).
    headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49983"}
    up = sandbox.upload_url("/home/user/up.txt")
    assert "signature=v1_" in up
    r = httpx.post(up, files={"file": ("up.txt", b"uploaded via url")}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert sandbox.commands.run("cat /home/user/up.txt").stdout == "uploaded via url"
    down = sandbox.download_url("/home/user/up.txt")
    got = httpx.get(down, headers=headers, timeout=30)
    assert (got.status_code, got.text) == (200, "uploaded via url")
    # A signature with an expiry works until then.
    expiring = sandbox.download_url("/home/user/up.txt", use_signature_expiration=60)
    assert "signature_expiration=" in expiring
    assert httpx.get(expiring, headers=headers, timeout=30).text == "uploaded via url"
    # A forged signature, a signature for another path, and none at all are refused.
    url = httpx.URL(down)
    forged = "v1_" + base64.b64encode(hashlib.sha256(b"nope").digest()).rstrip(b"=").decode()
    assert httpx.get(url.copy_set_param("signature", forged), headers=headers, timeout=30).status_code == 401
    other = url.copy_set_param("path", "/etc/passwd")
    assert httpx.get(other, headers=headers, timeout=30).status_code == 401
    assert httpx.get(url.copy_remove_param("signature"), headers=headers, timeout=30).status_code == 401
    # A read signature does not allow a write.
    write_with_read = httpx.post(down, files={"file": ("up.txt", b"overwritten")}, headers=headers, timeout=30)
    assert write_with_read.status_code == 401
    assert sandbox.files.read("/home/user/up.txt") == "uploaded via url"
