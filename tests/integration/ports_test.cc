// Sandbox::connect_port, the data plane's way into a sandbox's ports, as root on the test
// rootfs: brig-init connects inside the sandbox's network namespace and passes the socket back.
// Servers are python3 scripts run in the sandbox; what they print proves where the connection
// came from.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "fixtures/sandbox_fixture.h"

namespace brig::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// argv: ADDRESS PORT BACKLOG [hang]. Greets each connection with the peer's address, then
// echoes one read back and closes; with "hang" it never accepts at all.
constexpr const char* kServer = R"(
import socket, sys, time
family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(int(sys.argv[3]))
print('listening', flush=True)
if len(sys.argv) > 4:
    time.sleep(600)
while True:
    c, peer = s.accept()
    c.sendall(('peer=%s\n' % peer[0]).encode())
    c.sendall(c.recv(65536))
    c.close()
)";

// Starts kServer in the background and waits (bounded) until it says it listens.
sandbox::SpawnedProcess start_server(TestSandbox& sb, const std::string& address, int port, int backlog = 16,
                                     bool hang = false) {
  sandbox::ProcessSpec spec;
  spec.cmd = "python3";
  spec.args = {"-c", kServer, address, std::to_string(port), std::to_string(backlog)};
  if (hang) spec.args.push_back("hang");
  auto p = sb->spawn(spec);
  EXPECT_TRUE(p) << p.error().message();
  if (!p) return {};
  struct pollfd pfd = {p->stdout_fd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 10'000), 1) << "the server did not start";
  char buf[64] = {};
  EXPECT_GT(::read(p->stdout_fd.get(), buf, sizeof buf - 1), 0);
  EXPECT_STREQ(buf, "listening\n");
  return std::move(*p);
}

std::string exchange(int fd, const std::string& message) {
  std::string out;
  EXPECT_EQ(::send(fd, message.data(), message.size(), MSG_NOSIGNAL), static_cast<ssize_t>(message.size()));
  char buf[4096];
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(Ports, ConnectsToTheSandboxsOwnLoopback) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto server = start_server(sb, "127.0.0.1", 8080);
  auto fd = sb->connect_port(8080, 5s);
  ASSERT_TRUE(fd) << fd.error().message();
  // The server inside saw a connection from its own loopback, and echoes.
  EXPECT_EQ(exchange(fd->get(), "ping"), "peer=127.0.0.1\nping");
  // A second connection is a new one.
  auto again = sb->connect_port(8080, 5s);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(exchange(again->get(), "pong"), "peer=127.0.0.1\npong");
}

TEST(Ports, AClosedPortIsRefusedAndPortZeroIsNotAPort) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  auto fd = sb->connect_port(8099, 2s);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().sys_errno(), ECONNREFUSED) << fd.error().message();
  auto zero = sb->connect_port(0, 1s);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().sys_errno(), EINVAL);
}

TEST(Ports, AServerOnIpv6LoopbackOnlyIsReachedToo) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  if (sb.sh("grep -q '^00000000000000000000000000000001' /proc/net/if_inet6").status.exit_code != 0)
    GTEST_SKIP() << "no ::1 in the sandbox (IPv6 off on this host)";
  auto server = start_server(sb, "::1", 8081);
  auto fd = sb->connect_port(8081, 5s);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(exchange(fd->get(), "six"), "peer=::1\nsix");
}

TEST(Ports, AListenerThatNeverAcceptsTimesOutWhileInitKeepsServing) {
  BRIG_REQUIRE_SANDBOX_ENV();
  TestSandbox sb;
  // Backlog 0: one connection waits in the queue, later handshakes are not answered.
  auto server = start_server(sb, "127.0.0.1", 8082, 0, true);
  auto first = sb->connect_port(8082, 2s);
  ASSERT_TRUE(first) << first.error().message();
  Result<Fd> second = Error::make(errc::conflict, "not run");
  Clock::duration took{};
  std::thread slow([&] {
    auto t0 = Clock::now();
    second = sb->connect_port(8082, 1500ms);
    took = Clock::now() - t0;
  });
  // Meanwhile brig-init (single-threaded) answers at once: it never waits for the handshake.
  std::this_thread::sleep_for(200ms);
  auto t0 = Clock::now();
  auto r = sb.sh("echo alive");
  EXPECT_EQ(r.out, "alive\n");
  EXPECT_LT(Clock::now() - t0, 1s);
  slow.join();
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().sys_errno(), ETIMEDOUT) << second.error().message();
  EXPECT_GE(took, 1400ms);
  EXPECT_LT(took, 5s);
}

}  // namespace
}  // namespace brig::testing
