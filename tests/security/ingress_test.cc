// The data plane's way into a sandbox (Sandbox::connect_port, used for <port>-<id>.<domain>)
// must reach the sandbox's own loopback only: never a service on the host's.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "security/security_helpers.h"

namespace brig::security {
namespace {

using namespace std::chrono_literals;

// A host service on 127.0.0.1 (this test's own listener), on a port nothing in the sandbox
// listens on: the sandbox's port of that number is refused and the host's listener sees no
// connection.
TEST(Ingress, APortOfTheSandboxIsNeverTheHostsLoopback) {
  BRIG_REQUIRE_SANDBOX_ENV();
  int host = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(host, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);  // SAFETY: sockaddr_in
  ASSERT_EQ(::listen(host, 16), 0);
  socklen_t len = sizeof a;
  ::getsockname(host, reinterpret_cast<sockaddr*>(&a), &len);  // SAFETY: sockaddr_in
  const int port = ntohs(a.sin_port);
  TestSandbox sb;
  auto fd = sb->connect_port(static_cast<uint16_t>(port), 2s);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().sys_errno(), ECONNREFUSED) << fd.error().message();
  struct pollfd p = {host, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 200), 0) << "the host's listener was reached through the sandbox's port";
  ::close(host);
}

// A sandbox on the host's network (build sandboxes): its loopback is the host's, so none of
// its ports is opened for the data plane.
TEST(Ingress, ASandboxOnTheHostsNetworkHasNoPortsToOpen) {
  BRIG_REQUIRE_SANDBOX_ENV();
  auto spec = TestSandbox::default_spec();
  spec.host_network = true;  // build sandboxes only: its loopback is the host's
  TestSandbox sb(spec);
  auto fd = sb->connect_port(22, 1s);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().sys_errno(), EPERM) << fd.error().message();
}

}  // namespace
}  // namespace brig::security
