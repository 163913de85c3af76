#include "egress/dns.h"

#include <ldns/ldns.h>

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace brig::egress {

namespace {

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;

Pkt parse(std::span<const uint8_t> bytes) {
  ldns_pkt* p = nullptr;
  if (bytes.size() < 12 || ldns_wire2pkt(&p, bytes.data(), bytes.size()) != LDNS_STATUS_OK) return nullptr;
  return Pkt(p);
}

std::string wire(const ldns_pkt* p) {
  uint8_t* out = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&out, p, &size) != LDNS_STATUS_OK) return {};
  std::string s(reinterpret_cast<const char*>(out), size);
  std::free(out);  // ldns allocates with malloc (LDNS_FREE)
  return s;
}

// A bare header (id, QR, RD, rcode; no records) for a message whose question cannot be read.
std::string header_only(std::span<const uint8_t> bytes, Rcode rcode) {
  std::string h(12, '\0');
  h[0] = static_cast<char>(bytes[0]);
  h[1] = static_cast<char>(bytes[1]);
  h[2] = static_cast<char>(0x80 | (bytes[2] & 0x01));  // QR, RD copied
  h[3] = static_cast<char>(0x80 | static_cast<uint8_t>(rcode));  // RA
  return h;
}

std::string owner_text(const ldns_rr* rr) {
  char* s = ldns_rdf2str(ldns_rr_owner(rr));
  std::string out = s ? s : "";
  std::free(s);
  return out;
}

// A response to the query in `q.upstream` (its question), with `rcode` and `tc`.
std::string response_to(const DnsQuery& q, Rcode rcode, bool tc) {
  Pkt p = parse(std::span(reinterpret_cast<const uint8_t*>(q.upstream.data()), q.upstream.size()));
  if (!p) return {};
  ldns_pkt_set_id(p.get(), q.id);
  ldns_pkt_set_qr(p.get(), true);
  ldns_pkt_set_ra(p.get(), true);
  ldns_pkt_set_rd(p.get(), q.rd);
  ldns_pkt_set_tc(p.get(), tc);
  ldns_pkt_set_rcode(p.get(), static_cast<uint8_t>(rcode));
  return wire(p.get());
}

}  // namespace

std::optional<DnsQuery> parse_dns_query(std::span<const uint8_t> bytes, DnsReject& reject) {
  reject = {};
  if (bytes.size() < 12) {
    reject.why = "shorter than a DNS header";
    return std::nullopt;  // nothing to answer
  }
  if (bytes[2] & 0x80) {
    reject.why = "a response, not a query";
    return std::nullopt;  // never answer an answer (reflection loops)
  }
  auto refuse = [&](Rcode rcode, std::string why) -> std::optional<DnsQuery> {
    reject.rcode = rcode;
    reject.why = std::move(why);
    reject.response = header_only(bytes, rcode);
    return std::nullopt;
  };
  Pkt p = parse(bytes);
  if (!p) return refuse(Rcode::formerr, "malformed query");
  if (ldns_pkt_get_opcode(p.get()) != LDNS_PACKET_QUERY) return refuse(Rcode::notimp, "opcode is not QUERY");
  if (ldns_pkt_qdcount(p.get()) != 1 || ldns_rr_list_rr_count(ldns_pkt_question(p.get())) != 1)
    return refuse(Rcode::formerr, "not exactly one question");
  // ldns takes an OPT record out of the additional section into the packet's EDNS fields.
  if (ldns_pkt_ancount(p.get()) || ldns_pkt_nscount(p.get()) || ldns_pkt_arcount(p.get()))
    return refuse(Rcode::formerr, "records besides the question");
  const ldns_rr* question = ldns_rr_list_rr(ldns_pkt_question(p.get()), 0);
  ldns_rr_type type = ldns_rr_get_type(question);
  if (ldns_rr_get_class(question) != LDNS_RR_CLASS_IN) return refuse(Rcode::refused, "class is not IN");
  if (type == LDNS_RR_TYPE_AXFR || type == LDNS_RR_TYPE_IXFR || type == LDNS_RR_TYPE_ANY ||
      type == LDNS_RR_TYPE_OPT)
    return refuse(Rcode::notimp, "AXFR, IXFR, ANY and OPT are not answered");

  DnsQuery q;
  q.id = ldns_pkt_id(p.get());
  q.qtype = static_cast<uint16_t>(type);
  q.qclass = LDNS_RR_CLASS_IN;
  q.rd = ldns_pkt_rd(p.get());
  if (ldns_pkt_edns(p.get())) {
    q.edns = true;
    size_t size = ldns_pkt_edns_udp_size(p.get());
    q.udp_limit = std::clamp<size_t>(size, 512, 4096);
  }
  q.question = owner_text(question);
  if (auto name = normalize_name(q.question)) q.name = std::move(*name);

  // The upstream query: the same question (the same name bytes, so 0x20 case survives), id 0
  // (c-ares picks its own), recursion desired, and EDNS (a 1232-byte UDP size) only if the
  // sandbox used it, so that the answer has an OPT record only if the sandbox can take one.
  ldns_pkt* up = ldns_pkt_query_new(ldns_rdf_clone(ldns_rr_owner(question)), type, LDNS_RR_CLASS_IN, LDNS_RD);
  if (!up) return refuse(Rcode::servfail, "out of memory");
  Pkt upstream(up);
  ldns_pkt_set_id(up, 0);
  if (q.edns) ldns_pkt_set_edns_udp_size(up, 1232);
  q.upstream = wire(up);
  if (q.upstream.empty()) return refuse(Rcode::servfail, "cannot build the upstream query");
  return q;
}

std::string dns_refusal(const DnsQuery& q, Rcode rcode) { return response_to(q, rcode, false); }

std::string dns_truncated(const DnsQuery& q) { return response_to(q, Rcode::noerror, true); }

AnswerCheck check_dns_answer(std::span<const uint8_t> bytes, const DeniedSet& denied) {
  AnswerCheck out;
  Pkt p = parse(bytes);
  if (!p) {
    out.why = "malformed answer";
    return out;
  }
  namespace ip = boost::asio::ip;
  for (const ldns_rr_list* list : {ldns_pkt_answer(p.get()), ldns_pkt_additional(p.get())}) {
    for (size_t i = 0; list && i < ldns_rr_list_rr_count(list); ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(list, i);
      ldns_rr_type type = ldns_rr_get_type(rr);
      if (type != LDNS_RR_TYPE_A && type != LDNS_RR_TYPE_AAAA) continue;
      const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
      if (!rdf) {
        out.why = "address record without data";
        return out;
      }
      IpAddress addr;
      if (type == LDNS_RR_TYPE_A && ldns_rdf_size(rdf) == 4) {
        ip::address_v4::bytes_type b;
        std::memcpy(b.data(), ldns_rdf_data(rdf), 4);
        addr = ip::address_v4(b);
      } else if (type == LDNS_RR_TYPE_AAAA && ldns_rdf_size(rdf) == 16) {
        ip::address_v6::bytes_type b;
        std::memcpy(b.data(), ldns_rdf_data(rdf), 16);
        addr = ip::address_v6(b);
      } else {
        out.why = "address record of the wrong size";
        return out;
      }
      if (auto range = denied.match(addr)) {
        out.denied = addr.to_string();
        out.why = owner_text(rr) + " resolves to " + out.denied + ", in the always-denied range " + *range;
        return out;
      }
    }
  }
  out.ok = true;
  return out;
}

std::string with_dns_id(std::string answer, uint16_t id) {
  if (answer.size() >= 2) {
    answer[0] = static_cast<char>(id >> 8);
    answer[1] = static_cast<char>(id & 0xff);
  }
  return answer;
}

}  // namespace brig::egress
