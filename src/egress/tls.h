// TLS for header rules (network.rules, e2b-next.md 2.3 and 4.2): brig's per-install CA, and the
// certificates brig egress presents to a sandbox for a rule's domain.
//
// The CA is made once per state directory by the daemon (ensure_ca): an ECDSA P-256 key, readable
// by root only, and a self-signed certificate that sandboxes trust (core/network.h, the trust
// layer). brig egress reads both before it drops its privileges (Minter::open) and signs, on
// first use of each name, a leaf certificate for that name alone (one P-256 key for all leaves,
// made at start; a day of validity; cached, bounded). Every other connection stays end-to-end
// TLS: the CA only ever signs the names of header rules.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include <boost/asio/ssl/context.hpp>

#include "base/result.h"

namespace brig::egress {

// Makes the CA at `cert_path` (PEM, 0644) and `key_path` (PEM, 0600) unless both exist; each file
// is written aside and renamed into place. Returns the certificate's PEM.
[[nodiscard]] Result<std::string> ensure_ca(const std::string& cert_path, const std::string& key_path);

class Minter {
 public:
  // `upstream_ca`: the bundle upstream servers are verified against (empty or missing: OpenSSL's
  // default paths).
  static Result<std::unique_ptr<Minter>> open(const std::string& ca_cert, const std::string& ca_key,
                                              const std::string& upstream_ca);
  ~Minter();

  // A server context presenting a certificate for `name` (a normalized host name), TLS 1.2+,
  // ALPN "http/1.1" only.
  Result<std::shared_ptr<boost::asio::ssl::context>> server(const std::string& name);
  // The context of upstream connections: peer verification against `upstream_ca`, TLS 1.2+.
  boost::asio::ssl::context& client() { return client_; }

 private:
  struct Keys;
  Minter();
  std::unique_ptr<Keys> keys_;
  boost::asio::ssl::context client_;
  struct Leaf {
    std::shared_ptr<boost::asio::ssl::context> ctx;
    std::chrono::steady_clock::time_point minted;
  };
  std::unordered_map<std::string, Leaf> leaves_;  // by name
};

}  // namespace brig::egress
