"""Sandbox networks with the official `e2b` Python SDK: create with `allow_internet_access` and
`network`, `get_info` echoes them, `update_network` replaces them (omitted = cleared), E2B's 400
for domains without ALL_TRAFFIC. What a sandbox can reach under each policy is tested with
probes (tests/security/network_test.cc) and through the npm SDK (tests/sdk/network.test.mjs);
here one check from inside: the host side of its own network refuses it."""

import pytest
from e2b import ALL_TRAFFIC, Sandbox, SandboxException


def test_network_policy_is_created_echoed_and_replaced(sandboxes):
    s = sandboxes(allow_internet_access=False, network={"allow_out": ["1.1.1.1", "example.com"], "deny_out": [ALL_TRAFFIC]})
    info = s.get_info()
    assert info.allow_internet_access is False
    # The ingress half (allow_public_traffic) is echoed beside the egress lists.
    assert info.network == {"allow_out": ["1.1.1.1", "example.com"], "deny_out": ["0.0.0.0/0"], "allow_public_traffic": True}

    s.update_network({"deny_out": ["10.0.0.0/8"]})
    info = Sandbox.get_info(s.sandbox_id)
    assert info.allow_internet_access is True
    assert info.network == {"deny_out": ["10.0.0.0/8"], "allow_public_traffic": True}

    s.update_network({})
    info = s.get_info()
    assert info.network == {"allow_public_traffic": True}

    # The host side of its own network (its nameserver) is the host, and refuses it.
    r = s.commands.run(
        "python3 -c \"import socket;s=socket.socket();s.settimeout(3);"
        "gw=open('/etc/resolv.conf').read().split()[1];print(gw.startswith('10.'), s.connect_ex((gw,22)))\""
    )
    assert r.stdout.strip() == "True 111", r


def test_domains_need_all_traffic_denied():
    with pytest.raises(SandboxException, match="ALL_TRAFFIC"):
        Sandbox.create(timeout=60, network={"allow_out": ["example.com"]})
