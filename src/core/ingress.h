// A sandbox's ingress rules: who may reach its ports through the data plane, and the Host they
// see (E2B's network.allowPublicTraffic and network.maskRequestHost). Fixed at create, kept
// across daemon restarts (DaemonState), enforced by Service::open_port (ports.cc).
#pragma once

#include <string>

namespace brig::core {

struct Ingress {
  // false: every port but envd's needs the e2b-traffic-access-token header.
  bool allow_public_traffic = true;
  // The Host header sent to the sandbox's port instead of the client's, "${PORT}" replaced by
  // the port; "" = the client's. Not for envd's port.
  std::string mask_request_host;
};

}  // namespace brig::core
