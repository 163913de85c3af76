// What a sandbox's connection says about where it goes, from its first bytes: the server name
// of a TLS ClientHello (parsed by OpenSSL: a server-side SSL object on memory BIOs whose
// client-hello callback reads the server_name extension, then aborts the handshake) or the Host
// of an HTTP/1.x request head (Boost.Beast's parser). Nothing is parsed by hand beyond the
// server_name extension's own two length fields.
//
// The bytes are hostile: every input is bounded by the caller (`limit`), and malformed input is
// an answer ("other", no name), never an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace brig::egress {

struct Peek {
  enum class State {
    need_more,  // a ClientHello or request head has begun and is not complete yet
    done,
  };
  enum class Protocol { unknown, tls, http, other };
  State state = State::need_more;
  Protocol protocol = Protocol::unknown;
  std::string name;  // normalized (policy.h normalize_name); empty: none or unusable
  std::string note;  // why there is no name ("no server_name", "malformed ClientHello", ...)
};

// Classifies the first bytes of a connection. `limit` is the most bytes the caller will read:
// a ClientHello or head not complete within it is done, without a name ("too large").
Peek peek(std::span<const uint8_t> bytes, size_t limit);

const char* protocol_name(Peek::Protocol p);

}  // namespace brig::egress
