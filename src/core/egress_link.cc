#include "core/egress_link.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <spdlog/spdlog.h>

#include "base/cidr.h"
#include "egress/control.h"
#include "egress/spawn.h"

namespace brig::core {
namespace {

using namespace std::chrono_literals;

constexpr auto kReadyTimeout = 10s;
constexpr auto kAckTimeout = 5s;

std::string ip_text(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

// "0.0.0.0:15001" -> 15001.
uint16_t port_of(const std::string& address) {
  auto colon = address.rfind(':');
  unsigned v = 0;
  if (colon == std::string::npos) return 0;
  auto [end, ec] = std::from_chars(address.data() + colon + 1, address.data() + address.size(), v);
  return ec == std::errc() && v <= 65535 ? static_cast<uint16_t>(v) : 0;
}

Result<> write_line(int fd, const std::string& line) {
  std::string out = line + "\n";
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(errno, "write to brig egress");
    off += static_cast<size_t>(n);
  }
  return ok();
}

// Waits up to `timeout` for `pid` to exit; SIGKILL after that.
void reap(pid_t pid, std::chrono::milliseconds timeout) {
  if (pid <= 0) return;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = ::waitpid(pid, nullptr, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Every address of the host's interfaces (the sandboxes' host sides are in the sandbox range).
std::vector<std::string> host_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);  // SAFETY: AF_INET
    else if (i->ifa_addr->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf, sizeof buf);  // SAFETY: AF_INET6
    else
      continue;
    std::string a = buf;
    if (a.find('%') == std::string::npos && std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace

Result<std::unique_ptr<EgressLink>> EgressLink::start(const std::string& exe, const config::Config& config,
                                                     const std::string& ca_cert, const std::string& ca_key) {
  std::vector<std::string> args;
  if (!ca_cert.empty()) {
    args.insert(args.end(), {"--ca-cert", ca_cert, "--ca-key", ca_key});
    if (!config.network.ca_file.empty()) args.insert(args.end(), {"--upstream-ca", config.network.ca_file});
  }
  // The proxy reads the configuration of its own: the daemon's [egress] values go with it.
  for (auto& f : config::fields()) {
    if (f.section != "egress") continue;
    std::string value = f.kind == config::Kind::string ? f.get_str(config) : std::to_string(f.get_int(config));
    args.insert(args.end(), {"--set", f.name() + "=" + value});
  }
  if (!config.network.dns_upstream.empty() && config.network.dns_upstream != "off")
    args.insert(args.end(), {"--dns-upstream", config.network.dns_upstream});
  // The sandbox range is always denied (sandboxes never reach each other through the proxy),
  // and so is every address of the host.
  args.insert(args.end(), {"--deny", config.network.subnet});
  for (auto& a : host_addresses()) args.insert(args.end(), {"--deny", a});
  std::unique_ptr<EgressLink> link(new EgressLink(exe, std::move(args)));
  {
    std::lock_guard lock(link->mu_);
    BRIG_TRY(link->launch("0.0.0.0:0", "0.0.0.0:0"));
  }
  auto* self = link.get();
  link->reader_ = std::thread([self] { self->read_loop(); });
  return link;
}

Result<> EgressLink::launch(const std::string& listen, const std::string& dns_listen) {
  std::vector<std::string> args = {"--listen", listen, "--dns-listen", dns_listen};
  args.insert(args.end(), args_.begin(), args_.end());
  BRIG_TRY_ASSIGN(spawned, egress::spawn_proxy(exe_, args));
  std::string pending;
  auto ready = egress::read_event(spawned.control.get(), pending, kReadyTimeout);
  const auto* r = ready ? std::get_if<egress::Ready>(&*ready) : nullptr;
  if (!r) {
    ::kill(spawned.pid, SIGKILL);
    reap(spawned.pid, 1s);
    return Error::make(errc::protocol, "brig egress did not start: " +
                                              (ready ? std::string("unexpected first event") : ready.error().message()));
  }
  const Ports got{port_of(r->listen), port_of(r->dns)};
  // A restart must serve where the sandboxes' redirects point; ports_ is written once, before
  // anyone reads it (ports() takes no lock).
  const bool first = !ports_.proxy;
  if (!got.proxy || !got.dns || (!first && (got.proxy != ports_.proxy || got.dns != ports_.dns))) {
    ::kill(spawned.pid, SIGKILL);
    reap(spawned.pid, 1s);
    return Error::make(errc::protocol, "brig egress reported other ports (" + r->listen + ", " + r->dns + ")");
  }
  if (first) ports_ = got;
  pid_ = spawned.pid;
  control_ = std::move(spawned.control);
  spdlog::info("brig egress {} serves: TCP {}, DNS {}", pid_, r->listen, r->dns);
  return ok();
}

EgressLink::~EgressLink() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (control_) ::shutdown(control_.get(), SHUT_RDWR);
  }
  cv_.notify_all();
  if (reader_.joinable()) reader_.join();
  std::lock_guard lock(mu_);
  control_.reset();  // the proxy exits when its channel closes
  reap(pid_, 2s);
}

Result<> EgressLink::request(const std::string& line, uint64_t id) {
  std::unique_lock lock(mu_);
  if (!control_) return Error::make(errc::protocol, "brig egress is not running");
  BRIG_TRY(write_line(control_.get(), line));
  waiting_.insert(id);
  bool answered = cv_.wait_for(lock, kAckTimeout, [&] { return answers_.count(id) || stopping_; });
  waiting_.erase(id);
  if (!answered) return Error::make(errc::timed_out, "brig egress did not answer in time");
  if (stopping_) return Error::make(errc::protocol, "the daemon is stopping");
  Answer a = std::move(answers_[id]);
  answers_.erase(id);
  if (a.lost) return Error::make(errc::protocol, a.error);
  if (!a.error.empty()) return Error::make(errc::invalid_argument, "brig egress refused the policy: " + a.error);
  return ok();
}

Result<> EgressLink::set(uint32_t source, const std::string& sandbox, const std::vector<std::string>& allow_out,
                         const std::vector<std::string>& deny_out, const std::vector<egress::HeaderRule>& rules) {
  egress::ControlRequest r;
  {
    std::lock_guard lock(mu_);
    r.id = next_id_++;
  }
  r.op = egress::SetPolicy{ip_text(source), sandbox, allow_out, deny_out, rules};
  BRIG_TRY(request(egress::encode_request(r), r.id));
  std::lock_guard lock(mu_);
  policies_[source] = Policy{sandbox, allow_out, deny_out, rules};
  return ok();
}

Result<> EgressLink::remove(uint32_t source) {
  egress::ControlRequest r;
  {
    std::lock_guard lock(mu_);
    r.id = next_id_++;
    policies_.erase(source);
  }
  r.op = egress::RemovePolicy{ip_text(source)};
  return request(egress::encode_request(r), r.id);
}

void EgressLink::on_decision(std::function<void(const egress::Decision&)> fn) {
  std::lock_guard lock(mu_);
  on_decision_ = std::move(fn);
}

uint64_t EgressLink::decisions() const {
  std::lock_guard lock(mu_);
  return decisions_;
}

void EgressLink::read_loop() {
  std::string pending;
  int fd;
  {
    std::lock_guard lock(mu_);
    fd = control_.get();
  }
  for (;;) {
    auto event = egress::read_event(fd, pending, 1s);
    if (!event && event.error().is(errc::timed_out)) {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      continue;
    }
    if (event) {
      if (auto* ack = std::get_if<egress::Ack>(&*event)) {
        std::lock_guard lock(mu_);
        if (waiting_.count(ack->id)) answers_[ack->id] = Answer{ack->error, false};  // else: a restore's, not waited for
        cv_.notify_all();
      } else if (auto* d = std::get_if<egress::Decision>(&*event)) {
        std::function<void(const egress::Decision&)> told;
        {
          std::lock_guard lock(mu_);
          ++decisions_;
          told = on_decision_;
        }
        if (told) told(*d);
        // Names, addresses and reasons only: the proxy never reports a header or a payload.
        auto level = d->allow ? spdlog::level::debug : spdlog::level::info;
        spdlog::log(level, "egress sandbox={} {} {} name={} dest={} {}: {}", d->sandbox, d->kind, d->protocol,
                    d->name.empty() ? "-" : d->name, d->dest.empty() ? "-" : d->dest, d->allow ? "allowed" : "denied",
                    d->reason);
      } else if (auto* dropped = std::get_if<egress::Dropped>(&*event)) {
        spdlog::warn("brig egress dropped {} decisions (the daemon read too slowly)", dropped->count);
      }
      continue;
    }
    // The channel ended. When the daemon is not stopping, the proxy died: it is started again
    // on the same ports (the sandboxes' redirects name them) and told every policy again.
    std::unique_lock lock(mu_);
    if (stopping_) return;
    spdlog::error("brig egress {} ended ({}); starting it again", pid_, event.error().message());
    control_.reset();
    reap(pid_, 1s);
    pid_ = -1;
    for (uint64_t id : waiting_) answers_[id] = Answer{"brig egress ended before it answered", true};
    cv_.notify_all();
    while (!stopping_) {
      auto relaunched = launch("0.0.0.0:" + std::to_string(ports_.proxy), "0.0.0.0:" + std::to_string(ports_.dns));
      if (relaunched) break;
      spdlog::error("brig egress: {}", relaunched.error().message());
      cv_.wait_for(lock, 1s, [&] { return stopping_; });
    }
    if (stopping_) return;
    fd = control_.get();
    pending.clear();
    for (auto& [source, p] : policies_) {
      egress::ControlRequest r;
      r.id = next_id_++;  // its ack is not waited for
      r.op = egress::SetPolicy{ip_text(source), p.sandbox, p.allow_out, p.deny_out, p.rules};
      if (auto w = write_line(fd, egress::encode_request(r)); !w)
        spdlog::error("brig egress: policy of {} not restored: {}", p.sandbox, w.error().message());
    }
  }
}

}  // namespace brig::core
