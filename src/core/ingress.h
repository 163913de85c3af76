// A sandbox's ingress rules: who may reach its ports through the data plane, the Host they see,
// and the ports it serves over TLS (E2B's network.allowPublicTraffic, maskRequestHost and
// httpsPorts). Fixed at create, kept across daemon restarts (DaemonState), enforced by
// Service::open_port (ports.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace brig::core {

struct Ingress {
  // false: every port but envd's needs the e2b-traffic-access-token header.
  bool allow_public_traffic = true;
  // The Host header sent to the sandbox's port instead of the client's, "${PORT}" replaced by
  // the port; "" = the client's. Not for envd's port.
  std::string mask_request_host;
  // Ports the data plane reaches over TLS (E2B's network.httpsPorts): the sandbox's server
  // speaks HTTPS there, with a certificate nobody checks. Sorted, no repeats.
  std::vector<uint16_t> https_ports;
};

}  // namespace brig::core
