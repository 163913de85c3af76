// brig-egress started the way the daemon would (egress/spawn.h): the real binary, its control
// channel from C++, its DNS stub on loopback (no upstream needed for what is asked here), and its
// exit when the channel closes.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "base/util.h"
#include "egress/spawn.h"

namespace brig::egress {
namespace {

using namespace std::chrono_literals;

// One A query for `name` to 127.0.0.1:`port` over UDP; returns the rcode (-1: no answer).
int dns_rcode(uint16_t port, const std::string& name) {
  std::string q("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  for (const auto& label : split(name, '.')) {
    q.push_back(static_cast<char>(label.size()));
    q += label;
  }
  q += std::string("\x00\x00\x01\x00\x01", 5);
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{3, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  char buf[512];
  ssize_t n = recv(s.get(), buf, sizeof buf, 0);
  if (n < 12 || buf[0] != 0x12 || buf[1] != 0x34) return -1;
  return buf[3] & 0x0f;
}

struct Proc {
  Spawned s;
  std::string pending;
  ~Proc() {
    if (s.pid > 0) {
      kill(s.pid, SIGKILL);
      waitpid(s.pid, nullptr, 0);
    }
  }
  ControlEvent next() {
    auto e = read_event(s.control.get(), pending, 10s);
    EXPECT_TRUE(e) << (e ? "" : e.error().message());
    return e ? *e : ControlEvent(Dropped{});
  }
  Ack ack() {
    for (int i = 0; i < 100; ++i)
      if (auto e = next(); std::holds_alternative<Ack>(e)) return std::get<Ack>(e);
    ADD_FAILURE() << "no ack";
    return {};
  }
  void send(const ControlRequest& r) {
    std::string line = encode_request(r);
    ASSERT_TRUE(write_fd_all(s.control.get(), line, "control"));
  }
};

TEST(EgressSpawn, ControlChannelDnsAndExit) {
  auto spawned = spawn_proxy(BRIG_BIN_PATH, {"--listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0",
                                             "--dns-upstream", "127.0.0.1:9"});
  ASSERT_TRUE(spawned) << spawned.error().message();
  Proc p{std::move(*spawned)};
  ControlEvent first = p.next();
  ASSERT_TRUE(std::holds_alternative<Ready>(first));
  const Ready& ready = std::get<Ready>(first);
  ASSERT_TRUE(ready.dns.starts_with("127.0.0.1:")) << ready.dns;
  auto port = static_cast<uint16_t>(std::stoi(ready.dns.substr(10)));
  ASSERT_TRUE(ready.listen.starts_with("127.0.0.1:")) << ready.listen;

  // An address no sandbox has: REFUSED.
  EXPECT_EQ(dns_rcode(port, "allowed.test"), 5);
  // Loopback as a sandbox with a strict policy: names it does not allow are NXDOMAIN, answered
  // by the stub itself, and each is a decision in the sandbox's log.
  p.send({1, SetPolicy{"127.0.0.1", "sbxspawn", {"allowed.test"}, {"0.0.0.0/0"}}});
  Ack a = p.ack();
  EXPECT_EQ(a.id, 1u);
  EXPECT_EQ(a.error, "");
  EXPECT_EQ(dns_rcode(port, "other.test"), 3);
  ControlEvent e = p.next();
  ASSERT_TRUE(std::holds_alternative<Decision>(e));
  const Decision& d = std::get<Decision>(e);
  EXPECT_EQ(d.sandbox, "sbxspawn");
  EXPECT_EQ(d.kind, "dns");
  EXPECT_EQ(d.name, "other.test");
  EXPECT_FALSE(d.allow);
  // A bad request is an error with its id; the proxy carries on.
  p.send({2, SetPolicy{"127.0.0.1", "sbxspawn", {"10.0.0.0/99"}, {}}});
  a = p.ack();
  EXPECT_EQ(a.id, 2u);
  EXPECT_NE(a.error.find("10.0.0.0/99"), std::string::npos) << a.error;
  p.send({3, RemovePolicy{"127.0.0.1"}});
  EXPECT_EQ(p.ack().error, "");
  EXPECT_EQ(dns_rcode(port, "other.test"), 5);

  // Closing the channel ends the proxy, cleanly.
  p.s.control.reset();
  int status = -1;
  for (int i = 0; i < 100 && waitpid(p.s.pid, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  p.s.pid = -1;
}

TEST(EgressSpawn, BadArgumentsFailAtOnce) {
  auto spawned = spawn_proxy(BRIG_BIN_PATH, {"--listen", "not-an-address"});
  ASSERT_TRUE(spawned);
  Proc p{std::move(*spawned)};
  std::string pending;
  auto e = read_event(p.s.control.get(), pending, 10s);
  EXPECT_FALSE(e);  // the channel closes without a ready
  int status = -1;
  waitpid(p.s.pid, &status, 0);
  p.s.pid = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace brig::egress
