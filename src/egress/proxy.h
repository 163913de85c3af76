// brig-egress: the process sandboxes' outgoing TCP is redirected to (nftables `redirect`), and
// their DNS stub. One thread, one Boost.Asio loop:
//
//   TCP: accept (accept4, CLOEXEC) -> original destination (SO_ORIGINAL_DST) -> the sandbox by
//   the connection's source address -> when its policy has domains, the first bytes (bounded in
//   size and time: peek.h) for a TLS server name or HTTP Host -> the decision (policy.h) ->
//   a domain allow dials the *name*, resolved here with c-ares, never an always-denied answer
//   (pinning: the address the sandbox chose does not matter); a CIDR or default allow dials the
//   original destination -> the peeked bytes are replayed and both directions are relayed with
//   splice(2) through a 64 KiB pipe each (half-close passed on). A TLS connection to the domain
//   of a header rule is the exception: dialled by name, then terminated and read request by
//   request (egress/intercept.h).
//   DNS: UDP and TCP on --dns-listen: each query parsed (dns.h), refused when malformed, answered
//   NXDOMAIN in strict mode for names no domain entry allows, otherwise asked upstream afresh;
//   an answer with an always-denied address is REFUSED (rebinding).
//   Control: JSON lines on --control-fd (control.h): policies in, acks and decisions out. When
//   the channel closes (the daemon is gone), the process exits.
//
// Before serving it binds its sockets, opens the resolver, becomes `run_as` (no groups, no
// capabilities), sets no_new_privs and non-dumpable, and installs its seccomp allowlist
// (policy/egress_policy.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace brig::egress {

struct ProxyOptions {
  std::string listen;                     // "IP:PORT" the TCP redirect goes to
  std::string dns_listen;                 // "IP:PORT" of the DNS stub (UDP and TCP); empty: none
  std::vector<std::string> dns_upstream;  // "IP[:PORT]"; empty: /etc/resolv.conf's nameservers
  int control_fd = -1;
  std::vector<std::string> deny;          // more always-denied ranges: the host's addresses, the sandbox range
  struct Identity {
    uid_t uid;
    gid_t gid;
  };
  std::optional<Identity> run_as;         // nullopt: keep the caller's identity (not root)
  // Header rules (egress/intercept.h): brig's CA (egress/tls.h), read before privileges are
  // dropped, and the CAs upstream servers are verified against. No CA: rules are not applied
  // (their connections are relayed unread, like any other).
  std::string ca_cert, ca_key, upstream_ca;
  config::Egress limits;
};

// Runs until the control channel closes (exit code 0) or setup fails (1, with a message on
// stderr).
int run_proxy(const ProxyOptions& options);

}  // namespace brig::egress
