#include "egress/peek.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <memory>
#include <string_view>

#include "egress/policy.h"

namespace brig::egress {

namespace http = boost::beast::http;

namespace {

// ---- TLS -------------------------------------------------------------------------------------

struct Capture {
  bool called = false;
  bool has_sni = false;
  std::string sni;
  bool malformed = false;
};

// Reads the server_name extension (RFC 6066 3): a 2-byte list length, then entries of a 1-byte
// type (0: host_name), a 2-byte length and the name. The first host_name entry is the name.
int client_hello_cb(SSL* ssl, int* alert, void*) {
  auto* cap = static_cast<Capture*>(SSL_get_app_data(ssl));
  cap->called = true;
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1) {
    if (len < 2 || static_cast<size_t>((p[0] << 8) | p[1]) != len - 2) {
      cap->malformed = true;
    } else {
      size_t i = 2;
      while (i + 3 <= len) {
        unsigned type = p[i];
        size_t n = static_cast<size_t>((p[i + 1] << 8) | p[i + 2]);
        i += 3;
        if (n > len - i) {
          cap->malformed = true;
          break;
        }
        if (type == TLSEXT_NAMETYPE_host_name) {
          cap->has_sni = true;
          cap->sni.assign(reinterpret_cast<const char*>(p + i), n);
          break;
        }
        i += n;
      }
    }
  }
  // Stop here: the proxy never answers the handshake itself.
  *alert = SSL_AD_INTERNAL_ERROR;
  return SSL_CLIENT_HELLO_ERROR;
}

SSL_CTX* peek_ctx() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    if (c) {
      SSL_CTX_set_min_proto_version(c, 0);
      SSL_CTX_set_client_hello_cb(c, client_hello_cb, nullptr);
    }
    return c;
  }();
  return ctx;
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};

Peek peek_tls(std::span<const uint8_t> bytes, size_t limit) {
  Peek out;
  out.protocol = Peek::Protocol::tls;
  SSL_CTX* ctx = peek_ctx();
  if (!ctx) {
    out.state = Peek::State::done;
    out.note = "TLS parser unavailable";
    return out;
  }
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx));
  BIO* rbio = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
  BIO* wbio = BIO_new(BIO_s_mem());
  if (!ssl || !rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    out.state = Peek::State::done;
    out.note = "TLS parser unavailable";
    return out;
  }
  // A read-only memory BIO reports EOF when empty; make it "retry" so that a ClientHello cut
  // short reads as incomplete, not as broken.
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl.get(), rbio, wbio);  // ssl owns both
  Capture cap;
  SSL_set_app_data(ssl.get(), &cap);
  int rc = SSL_accept(ssl.get());
  int err = SSL_get_error(ssl.get(), rc);
  ERR_clear_error();
  if (cap.called) {
    out.state = Peek::State::done;
    if (cap.malformed) {
      out.note = "malformed server_name";
    } else if (!cap.has_sni) {
      out.note = "no server_name";
    } else if (is_ip_literal(cap.sni)) {
      out.note = "server_name is an IP address";
    } else if (auto n = normalize_name(cap.sni)) {
      out.name = std::move(*n);
    } else {
      out.note = "server_name is not a host name";
    }
    return out;
  }
  if (err == SSL_ERROR_WANT_READ && bytes.size() < limit) return out;  // need_more
  out.state = Peek::State::done;
  out.note = err == SSL_ERROR_WANT_READ ? "ClientHello too large" : "malformed ClientHello";
  return out;
}

// ---- HTTP ------------------------------------------------------------------------------------

bool is_tchar(uint8_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// The host of an authority ("name", "name:port", "[v6]:port"), without its port.
std::string_view authority_host(std::string_view a) {
  if (a.starts_with('[')) {
    auto close = a.find(']');
    return close == std::string_view::npos ? std::string_view{} : a.substr(1, close - 1);
  }
  if (auto colon = a.rfind(':'); colon != std::string_view::npos) return a.substr(0, colon);
  return a;
}

// The authority of an absolute-form target ("http://name:80/path"); empty if it is not one.
std::string_view absolute_authority(std::string_view target) {
  auto scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos || target.starts_with('/')) return {};
  std::string_view rest = target.substr(scheme_end + 3);
  auto end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
  return authority;
}

Peek peek_http(std::span<const uint8_t> bytes, size_t limit) {
  Peek out;
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  // The request line decides early whether this is HTTP at all (a client-first protocol that is
  // not, like SSH's banner line, must not wait for a blank line that never comes).
  size_t i = 0;
  while (i < text.size() && is_tchar(static_cast<uint8_t>(text[i])) && i < 32) ++i;
  if (i == text.size() && i < 32) return out;  // still inside the method
  if (i == 0 || i == 32 || text[i] != ' ') {
    out.state = Peek::State::done;
    out.protocol = Peek::Protocol::other;
    return out;
  }
  auto eol = text.find("\r\n");
  if (eol == std::string_view::npos) {
    if (text.size() >= limit) {
      out.state = Peek::State::done;
      out.protocol = Peek::Protocol::other;
      out.note = "request line too long";
    }
    return out;
  }
  std::string_view line = text.substr(0, eol);
  if (!line.ends_with(" HTTP/1.1") && !line.ends_with(" HTTP/1.0")) {
    out.state = Peek::State::done;
    out.protocol = Peek::Protocol::other;
    return out;
  }
  out.protocol = Peek::Protocol::http;
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(std::min<size_t>(limit, UINT32_MAX)));
  parser.eager(false);
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec == http::error::need_more && bytes.size() < limit) return out;  // need_more
  out.state = Peek::State::done;
  if (ec == http::error::need_more || ec == http::error::header_limit) {
    out.note = "request head too large";
    return out;
  }
  if (ec || !parser.is_header_done()) {
    out.note = "malformed request head";
    return out;
  }
  const auto& req = parser.get();
  if (req.count(http::field::host) > 1) {
    out.note = "more than one Host";
    return out;
  }
  std::string_view host = req.count(http::field::host) ? std::string_view(req[http::field::host]) : std::string_view{};
  std::string_view target(req.target().data(), req.target().size());
  std::string_view other;  // a name the request target gives, which must agree with Host
  if (req.method() == http::verb::connect) other = target;
  else other = absolute_authority(target);
  if (host.empty()) host = other;
  std::string_view host_name = authority_host(host);
  if (host_name.empty()) {
    out.note = "no Host";
    return out;
  }
  if (is_ip_literal(host_name)) {
    out.note = "Host is an IP address";
    return out;
  }
  auto name = normalize_name(host_name);
  if (!name) {
    out.note = "Host is not a host name";
    return out;
  }
  if (!other.empty()) {
    auto other_name = normalize_name(authority_host(other));
    if (!other_name || *other_name != *name) {
      out.note = "Host and request target disagree";
      return out;
    }
  }
  out.name = std::move(*name);
  return out;
}

}  // namespace

const char* protocol_name(Peek::Protocol p) {
  switch (p) {
    case Peek::Protocol::tls: return "tls";
    case Peek::Protocol::http: return "http";
    case Peek::Protocol::other: return "other";
    case Peek::Protocol::unknown: break;
  }
  return "unknown";
}

Peek peek(std::span<const uint8_t> bytes, size_t limit) {
  if (bytes.size() > limit) bytes = bytes.first(limit);
  if (bytes.empty()) return {};
  // A TLS handshake record (content type 22, major version 3).
  if (bytes[0] == 0x16) {
    if (bytes.size() >= 2 && bytes[1] != 0x03) return {Peek::State::done, Peek::Protocol::other, {}, {}};
    return peek_tls(bytes, limit);
  }
  if (is_tchar(bytes[0])) return peek_http(bytes, limit);
  return {Peek::State::done, Peek::Protocol::other, {}, {}};
}

}  // namespace brig::egress
