"""Ports with the official `e2b` Python SDK: a web server started in the sandbox is reached at
get_host(port) through the daemon's data plane; a closed port is 502, a bad one 400; a sandbox
created with allow_public_traffic False wants its traffic token on every port but envd's, and
mask_request_host is the Host its servers see."""

import os
from urllib.parse import urlparse

import httpx

from sdkutil import wait_until

API = urlparse(os.environ.get("E2B_API_URL", "http://127.0.0.1:49982"))


def get(host, path="/", headers=None):
    """GET http://HOST/PATH. HOST is <port>-<id>.localhost:<daemon port>, which is loopback (RFC
    6761) but which Python's resolver does not know: the request goes to the daemon's address
    with that Host, as curl or a browser would send it."""
    return httpx.get(f"http://{API.hostname}:{API.port}{path}", headers={"Host": host, **(headers or {})}, timeout=30)


def serve(sandbox, port, command, headers=None):
    """Starts `command` in the background and waits (bounded) until the port answers."""
    handle = sandbox.commands.run(command, background=True, cwd="/home/user")
    assert wait_until(lambda: get(sandbox.get_host(port), headers=headers).status_code != 502, timeout=15), (
        f"nothing answered on port {port}"
    )
    return handle


def test_a_closed_port_is_502_and_a_bad_port_400(sandbox):
    closed = get(sandbox.get_host(3999))
    assert closed.status_code == 502
    body = closed.json()
    assert body["sandboxId"] == sandbox.sandbox_id
    assert "port 3999 is not open" in body["message"]
    for bad in ("0", "70000", "abc"):
        res = httpx.get(
            os.environ["E2B_SANDBOX_URL"], headers={"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": bad}
        )
        assert res.status_code == 400, bad
    assert get(f"3000-zzzzzzzzzzzzzzzzzzzz.localhost:{API.port}").status_code == 502


def test_a_web_server_in_the_sandbox_is_reached_at_get_host(sandbox):
    sandbox.files.write("/home/user/hello.txt", "hi from python")
    assert sandbox.get_host(3000) == f"3000-{sandbox.sandbox_id}.localhost:{API.port}"
    server = serve(sandbox, 3000, "python3 -m http.server 3000")
    listing = get(sandbox.get_host(3000))
    assert listing.status_code == 200
    assert "Directory listing for /" in listing.text
    assert "hello.txt" in listing.text
    assert get(sandbox.get_host(3000), "/hello.txt").text == "hi from python"
    # One keep-alive connection, several requests: all reach the server.
    with httpx.Client(base_url=f"http://{API.hostname}:{API.port}", headers={"Host": sandbox.get_host(3000)}) as c:
        for _ in range(3):
            assert c.get("/hello.txt").text == "hi from python"
    server.kill()
    assert wait_until(lambda: get(sandbox.get_host(3000)).status_code == 502, timeout=10)


def test_private_traffic_wants_the_token_and_the_host_is_masked(sandboxes):
    s = sandboxes(network={"allow_public_traffic": False, "mask_request_host": "app.internal:${PORT}"})
    token = s.traffic_access_token
    assert token
    info = s.get_info()
    assert info.network["allow_public_traffic"] is False
    assert info.network["mask_request_host"] == "app.internal:${PORT}"
    assert s.commands.run("echo envd").stdout == "envd\n"  # envd's port wants no traffic token
    # The server answers with the Host it was sent.
    script = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        b = self.headers.get('Host', '').encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers()\n"
        "        self.wfile.write(b)\n"
        "http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()\n"
    )
    s.files.write("/tmp/host.py", script)
    serve(s, 8000, "python3 /tmp/host.py", headers={"e2b-traffic-access-token": token})
    missing = get(s.get_host(8000))
    assert missing.status_code == 403
    assert "is missing" in missing.json()["message"]
    wrong = get(s.get_host(8000), headers={"e2b-traffic-access-token": "0" * len(token)})
    assert wrong.status_code == 403
    assert "is invalid" in wrong.json()["message"]
    ok = get(s.get_host(8000), headers={"e2b-traffic-access-token": token})
    assert ok.status_code == 200
    assert ok.text == "app.internal:8000"
