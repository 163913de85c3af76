// DNS messages of the stub resolver, read and written with ldns (NLnet Labs): the sandbox's
// query is parsed and checked, the upstream query is built afresh from its question (the
// sandbox's bytes are never forwarded), upstream answers are parsed and checked for private
// addresses (DNS rebinding), and refusals are built here.
//
// Pure functions over byte strings: no sockets, no state.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "egress/policy.h"

namespace brig::egress {

// RFC 1035/6891 response codes the stub sends.
enum class Rcode : uint8_t { noerror = 0, formerr = 1, servfail = 2, nxdomain = 3, notimp = 4, refused = 5 };

struct DnsQuery {
  uint16_t id = 0;
  uint16_t qtype = 0, qclass = 0;
  bool rd = false;
  bool edns = false;       // the query had an OPT record
  size_t udp_limit = 512;  // what the client takes over UDP (512, or its EDNS size, at most 4096)
  std::string name;        // the question's name, normalized; empty when it is not a host name
  std::string question;    // the question's name in presentation form, for logs
  std::string upstream;    // the query brig sends upstream (id 0, RD, EDNS if the sandbox's had it), wire form
};

struct DnsReject {
  Rcode rcode = Rcode::formerr;
  std::string why;
  std::string response;  // the answer to send back; empty: send nothing (not a DNS query at all)
};

// A query from a sandbox: opcode QUERY, exactly one question of class IN, no answer or
// authority records, an OPT record at most; not AXFR, IXFR or ANY. Anything else is rejected
// with a response that says why (FORMERR, NOTIMP or REFUSED), or none if the header itself is
// unreadable.
std::optional<DnsQuery> parse_dns_query(std::span<const uint8_t> bytes, DnsReject& reject);

// A response to `q` with `rcode` and no records (the question echoed).
std::string dns_refusal(const DnsQuery& q, Rcode rcode);
// A response to `q` with TC set and no records: the answer does not fit the client's UDP size.
std::string dns_truncated(const DnsQuery& q);

struct AnswerCheck {
  bool ok = false;
  std::string denied;  // the private address an A/AAAA record gave, if that is why not
  std::string why;
};
// Parses an upstream answer and checks every A and AAAA record in it against `denied`.
AnswerCheck check_dns_answer(std::span<const uint8_t> bytes, const DeniedSet& denied);

// `answer` with its id replaced by `id` (the answer to the sandbox's query).
std::string with_dns_id(std::string answer, uint16_t id);

}  // namespace brig::egress
