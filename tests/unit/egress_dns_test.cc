// The DNS stub's messages (src/egress/dns.h): queries built with ldns and by hand (malformed),
// answers with public and private addresses (rebinding), refusals and truncation.
#include <gtest/gtest.h>

#include <ldns/ldns.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "egress/dns.h"

namespace brig::egress {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes wire(ldns_pkt* p) {
  uint8_t* out = nullptr;
  size_t n = 0;
  EXPECT_EQ(ldns_pkt2wire(&out, p, &n), LDNS_STATUS_OK);
  Bytes b(out, out + n);
  std::free(out);
  ldns_pkt_free(p);
  return b;
}

Bytes query(const char* name, ldns_rr_type type = LDNS_RR_TYPE_A, uint16_t id = 0x1234, int edns = 0,
            ldns_rr_class cls = LDNS_RR_CLASS_IN) {
  ldns_pkt* p = ldns_pkt_query_new(ldns_dname_new_frm_str(name), type, cls, LDNS_RD);
  ldns_pkt_set_id(p, id);
  if (edns) ldns_pkt_set_edns_udp_size(p, static_cast<uint16_t>(edns));
  return wire(p);
}

// An answer to `q` with the given records ("name. 60 IN A 1.2.3.4").
Bytes answer(const Bytes& q, std::vector<std::string> records, ldns_pkt_section section = LDNS_SECTION_ANSWER) {
  ldns_pkt* p = nullptr;
  EXPECT_EQ(ldns_wire2pkt(&p, q.data(), q.size()), LDNS_STATUS_OK);
  ldns_pkt_set_qr(p, true);
  for (const auto& r : records) {
    ldns_rr* rr = nullptr;
    EXPECT_EQ(ldns_rr_new_frm_str(&rr, r.c_str(), 0, nullptr, nullptr), LDNS_STATUS_OK) << r;
    ldns_pkt_push_rr(p, section, rr);
  }
  return wire(p);
}

std::optional<DnsQuery> parse(const Bytes& b, DnsReject& r) { return parse_dns_query(b, r); }

uint8_t rcode_of(const std::string& response) { return static_cast<uint8_t>(response.at(3)) & 0x0f; }

TEST(EgressDns, ParsesAQuery) {
  DnsReject r;
  auto q = parse(query("WwW.Example.COM.", LDNS_RR_TYPE_AAAA, 0xbeef), r);
  ASSERT_TRUE(q) << r.why;
  EXPECT_EQ(q->id, 0xbeef);
  EXPECT_EQ(q->qtype, LDNS_RR_TYPE_AAAA);
  EXPECT_TRUE(q->rd);
  EXPECT_FALSE(q->edns);
  EXPECT_EQ(q->udp_limit, 512u);
  EXPECT_EQ(q->name, "www.example.com");
  // The upstream query keeps the name's exact bytes (0x20 case), id 0, and no OPT record.
  ldns_pkt* up = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&up, reinterpret_cast<const uint8_t*>(q->upstream.data()), q->upstream.size()), LDNS_STATUS_OK);
  EXPECT_EQ(ldns_pkt_id(up), 0);
  EXPECT_FALSE(ldns_pkt_edns(up));
  char* s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(up), 0)));
  EXPECT_STREQ(s, "WwW.Example.COM.");
  std::free(s);
  ldns_pkt_free(up);
}

TEST(EgressDns, EdnsSizeIsKeptWithinBounds) {
  DnsReject r;
  EXPECT_EQ(parse(query("a.com.", LDNS_RR_TYPE_A, 1, 1232), r)->udp_limit, 1232u);
  EXPECT_TRUE(parse(query("a.com.", LDNS_RR_TYPE_A, 1, 1232), r)->edns);
  EXPECT_EQ(parse(query("a.com.", LDNS_RR_TYPE_A, 1, 65000), r)->udp_limit, 4096u);
  EXPECT_EQ(parse(query("a.com.", LDNS_RR_TYPE_A, 1, 100), r)->udp_limit, 512u);
}

TEST(EgressDns, RefusesWhatIsNotAPlainQuery) {
  DnsReject r;
  // Too short for a header, or an answer: nothing is sent back at all.
  EXPECT_FALSE(parse(Bytes{1, 2, 3}, r));
  EXPECT_TRUE(r.response.empty());
  Bytes q = query("a.com.");
  Bytes resp = q;
  resp[2] |= 0x80;
  EXPECT_FALSE(parse(resp, r));
  EXPECT_TRUE(r.response.empty());
  // Malformed: FORMERR with the query's id.
  Bytes cut(q.begin(), q.begin() + 14);
  EXPECT_FALSE(parse(cut, r));
  ASSERT_EQ(r.response.size(), 12u);
  EXPECT_EQ(rcode_of(r.response), 1);
  EXPECT_EQ(static_cast<uint8_t>(r.response[0]), q[0]);
  EXPECT_EQ(static_cast<uint8_t>(r.response[1]), q[1]);
  // Two questions.
  Bytes two = q;
  two[5] = 2;
  EXPECT_FALSE(parse(two, r));
  // An opcode other than QUERY (UPDATE = 5).
  Bytes update = q;
  update[2] = static_cast<uint8_t>((update[2] & 0x87) | (5 << 3));
  EXPECT_FALSE(parse(update, r));
  EXPECT_EQ(rcode_of(r.response), 4);
  // Records besides the question.
  EXPECT_FALSE(parse(answer(q, {"a.com. 60 IN A 1.2.3.4"}), r) && false);
  Bytes with_answer = answer(q, {"a.com. 60 IN A 1.2.3.4"});
  with_answer[2] &= 0x7f;  // a "query" carrying an answer record
  EXPECT_FALSE(parse(with_answer, r));
  EXPECT_EQ(rcode_of(r.response), 1);
  // Zone transfers, ANY, other classes.
  EXPECT_FALSE(parse(query("a.com.", LDNS_RR_TYPE_AXFR), r));
  EXPECT_EQ(rcode_of(r.response), 4);
  EXPECT_FALSE(parse(query("a.com.", LDNS_RR_TYPE_ANY), r));
  EXPECT_FALSE(parse(query("a.com.", LDNS_RR_TYPE_A, 1, 0, LDNS_RR_CLASS_CH), r));
  EXPECT_EQ(rcode_of(r.response), 5);
  // A compression pointer loop in the question name.
  Bytes loop = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01};
  EXPECT_FALSE(parse(loop, r));
  EXPECT_EQ(rcode_of(r.response), 1);
  // Random bytes never crash.
  Bytes junk(300);
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<uint8_t>(i * 37 + 11);
  for (size_t n = 0; n <= junk.size(); n += 7) (void)parse(Bytes(junk.begin(), junk.begin() + n), r);
}

TEST(EgressDns, NameThatIsNotAHostName) {
  DnsReject r;
  auto q = parse(query("a\\032b.com."), r);  // a space in a label
  ASSERT_TRUE(q);
  EXPECT_EQ(q->name, "");
}

TEST(EgressDns, AnswersWithPrivateAddressesAreRebinding) {
  DeniedSet denied;
  Bytes q = query("a.test.");
  auto span = [](const Bytes& b) { return std::span<const uint8_t>(b); };
  EXPECT_TRUE(check_dns_answer(span(answer(q, {"a.test. 60 IN A 203.0.113.10"})), denied).ok);
  EXPECT_TRUE(check_dns_answer(span(answer(q, {"a.test. 60 IN CNAME b.test.", "b.test. 60 IN A 198.51.100.1"})), denied).ok);
  EXPECT_TRUE(check_dns_answer(span(answer(q, {"a.test. 60 IN TXT \"10.0.0.1\""})), denied).ok);
  for (const char* bad : {"a.test. 60 IN A 10.1.2.3", "a.test. 60 IN A 127.0.0.1", "a.test. 60 IN A 169.254.169.254",
                          "a.test. 60 IN A 192.168.0.1", "a.test. 60 IN AAAA ::1", "a.test. 60 IN AAAA fd00::1",
                          "a.test. 60 IN AAAA ::ffff:10.0.0.1", "a.test. 60 IN A 0.0.0.0"}) {
    SCOPED_TRACE(bad);
    AnswerCheck c = check_dns_answer(span(answer(q, {"a.test. 60 IN A 203.0.113.10", bad})), denied);
    EXPECT_FALSE(c.ok);
    EXPECT_FALSE(c.denied.empty());
  }
  // In the additional section too.
  AnswerCheck c = check_dns_answer(span(answer(q, {"ns.test. 60 IN A 10.0.0.1"}, LDNS_SECTION_ADDITIONAL)), denied);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.denied, "10.0.0.1");
  // The host's own addresses, given as extra ranges.
  DeniedSet host({*parse_net("203.0.113.0/24")});
  EXPECT_FALSE(check_dns_answer(span(answer(q, {"a.test. 60 IN A 203.0.113.10"})), host).ok);
  // Malformed.
  c = check_dns_answer(span(Bytes{1, 2, 3}), denied);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(c.denied.empty());
}

TEST(EgressDns, RefusalsAndTruncation) {
  DnsReject r;
  auto q = parse(query("x.test.", LDNS_RR_TYPE_A, 0x4242), r);
  ASSERT_TRUE(q);
  for (Rcode rc : {Rcode::nxdomain, Rcode::refused, Rcode::servfail}) {
    std::string resp = dns_refusal(*q, rc);
    ldns_pkt* p = nullptr;
    ASSERT_EQ(ldns_wire2pkt(&p, reinterpret_cast<const uint8_t*>(resp.data()), resp.size()), LDNS_STATUS_OK);
    EXPECT_EQ(ldns_pkt_id(p), 0x4242);
    EXPECT_TRUE(ldns_pkt_qr(p));
    EXPECT_EQ(ldns_pkt_get_rcode(p), static_cast<uint8_t>(rc));
    EXPECT_EQ(ldns_pkt_ancount(p), 0);
    EXPECT_EQ(ldns_pkt_qdcount(p), 1);
    ldns_pkt_free(p);
  }
  std::string tc = dns_truncated(*q);
  EXPECT_TRUE(static_cast<uint8_t>(tc[2]) & 0x02);
  EXPECT_EQ(with_dns_id(std::string("\0\0rest", 6), 0xabcd), std::string("\xab\xcdrest", 6));
}

}  // namespace
}  // namespace brig::egress
