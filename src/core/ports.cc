// The data plane's way into a sandbox's ports: E2B's ingress rules (the traffic token of a
// private sandbox, the masked Host), then a connection made inside the sandbox's network
// namespace (Sandbox::connect_port). Envd's port is not here: the daemon serves it itself.
#include <openssl/crypto.h>

#include <algorithm>

#include "core/service.h"

namespace brig::core {
namespace {

Error forbidden(std::string message) { return {std::error_code(EACCES, std::generic_category()), std::move(message)}; }

bool same_secret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

Result<PortConnection> Service::open_port(Live& live, const OpenPort& req) {
  if (req.port == 0) return Error::make(errc::invalid_argument, "Invalid sandbox port");
  // E2B's proxy: envd's port has its own token; every other port of a private sandbox needs
  // the traffic token, and a missing one is told from a wrong one.
  if (!live.ingress.allow_public_traffic && req.port != kEnvdPort) {
    if (req.traffic_token.empty())
      return forbidden(std::string("Sandbox is secured with traffic access token. Token header '") + kTrafficTokenHeader +
                       "' is missing");
    if (!same_secret(req.traffic_token, live.traffic_token()))
      return forbidden(std::string("Sandbox is secured with traffic access token. Provided token in header '") +
                       kTrafficTokenHeader + "' is invalid");
  }
  PortConnection out;
  BRIG_TRY_ASSIGN(sock, live.sandbox->connect_port(
                            req.port, std::chrono::milliseconds(options_.config.server.port_connect_timeout_ms)));
  out.socket = std::move(sock);
  if (const std::string& mask = live.ingress.mask_request_host; !mask.empty() && req.port != kEnvdPort) {
    std::string host = mask;
    const std::string placeholder = "${PORT}", port = std::to_string(req.port);
    for (size_t at = host.find(placeholder); at != std::string::npos; at = host.find(placeholder, at + port.size()))
      host.replace(at, placeholder.size(), port);
    out.host = std::move(host);
  }
  out.tls = std::binary_search(live.ingress.https_ports.begin(), live.ingress.https_ports.end(), req.port);
  return out;
}

Result<> validate_ingress(const Ingress& ingress) {
  const std::string& h = ingress.mask_request_host;
  if (h.size() > kMaxMaskRequestHostBytes)
    return Error::make(errc::invalid_argument,
                       "maskRequestHost is longer than " + std::to_string(kMaxMaskRequestHostBytes) + " bytes");
  // It becomes a header value: visible ASCII only, so it can neither end the header nor add one.
  for (unsigned char c : h)
    if (c <= 0x20 || c >= 0x7f)
      return Error::make(errc::invalid_argument, "maskRequestHost may hold visible ASCII characters only");
  const auto& ports = ingress.https_ports;
  if (ports.size() > kMaxHttpsPorts)
    return Error::make(errc::invalid_argument, "httpsPorts lists more than " + std::to_string(kMaxHttpsPorts) + " ports");
  for (uint16_t p : ports)
    if (p == 0 || p == kEnvdPort || p == kInterpreterPort)
      return Error::make(errc::invalid_argument, "httpsPorts cannot hold port " + std::to_string(p) +
                                                     (p == 0 ? "" : ": brig serves it itself"));
  if (!std::is_sorted(ports.begin(), ports.end()) || std::adjacent_find(ports.begin(), ports.end()) != ports.end())
    return Error::make(errc::invalid_argument, "httpsPorts must be sorted, without repeats");
  return ok();
}

}  // namespace brig::core
