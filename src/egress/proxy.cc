#include "egress/proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <charconv>
#include <cstring>
#include <functional>
#include <span>
#include <deque>
#include <iostream>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "base/fd.h"
#include "base/log.h"
#include "base/util.h"
#include "egress/control.h"
#include "egress/dns.h"
#include "egress/intercept.h"
#include "egress/peek.h"
#include "egress/policy.h"
#include "egress/resolver.h"
#include "egress/tls.h"
#include "policy/egress_policy.h"

namespace brig::egress {

namespace asio = boost::asio;
namespace ip = boost::asio::ip;
using tcp = ip::tcp;
using udp = ip::udp;

namespace {

// SO_ORIGINAL_DST (linux/netfilter_ipv4.h, whose headers clash with <netinet/in.h>).
constexpr int kSoOriginalDst = 80;
// Bytes moved per direction and per turn of the loop before other connections get theirs.
constexpr size_t kSpliceChunk = 64 * 1024;
constexpr int kSpliceRounds = 16;
constexpr size_t kMaxSandboxes = 65536;

Result<tcp::endpoint> parse_endpoint(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return Error::make(errc::invalid_argument, "\"" + std::string(text) + "\" is not IP:PORT");
  boost::system::error_code ec;
  auto addr = ip::make_address_v4(std::string(text.substr(0, colon)), ec);
  unsigned port = 0;
  std::string_view p = text.substr(colon + 1);
  auto [end, perr] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (ec || p.empty() || perr != std::errc() || end != p.data() + p.size() || port > 65535)
    return Error::make(errc::invalid_argument, "\"" + std::string(text) + "\" is not IPv4:PORT");
  return tcp::endpoint(addr, static_cast<uint16_t>(port));
}

Result<Fd> bound_socket(int type, const tcp::endpoint& ep) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::from_errno(errno, "socket");
  int one = 1;
  (void)setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(ep.port());
  sin.sin_addr.s_addr = htonl(ep.address().to_v4().to_uint());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {  // SAFETY: sockaddr_in
    const int err = errno;  // before the message is built
    return Error::from_errno(err, "bind(" + ep.address().to_string() + ":" + std::to_string(ep.port()) + ")");
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), 1024) != 0) return Error::from_errno(errno, "listen");
  return fd;
}

std::string local_text(int fd) {
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) return {};  // SAFETY: sockaddr_in
  return ip::address_v4(ntohl(sin.sin_addr.s_addr)).to_string() + ":" + std::to_string(ntohs(sin.sin_port));
}

std::string endpoint_text(const ip::address_v4& a, uint16_t port) { return a.to_string() + ":" + std::to_string(port); }

class Egress;

// One connection from a sandbox, from accept to close.
class TcpConn : public std::enable_shared_from_this<TcpConn> {
 public:
  enum class Phase { peeking, deciding, connecting, relaying, closed };

  TcpConn(Egress& e, int fd, uint32_t source, ip::address_v4 dest, uint16_t port);
  void start();
  // The sandbox's policy changed: close the connection if the new one denies it.
  void recheck(const Policy* policy);
  void close();
  uint32_t source() const { return source_; }

 private:
  struct Pump {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    Fd pipe_r, pipe_w;
    size_t in_pipe = 0;
    bool eof = false, done = false;
  };

  void read_more();
  void finish_peek(const Peek& p);
  void decide();
  void on_resolved(std::vector<ip::address_v4> addrs, const std::string& error, const std::string& reason);
  void connect_to(std::shared_ptr<std::vector<ip::address_v4>> addrs, size_t i);
  void connected();
  void start_intercept();
  void start_pumps();
  void pump(Pump& p);
  void report(bool allow, const std::string& reason, const std::string& dest);

  Egress& e_;
  tcp::socket client_, upstream_;
  asio::steady_timer timer_;
  uint32_t source_;
  ip::address_v4 dest_;
  uint16_t port_;
  Phase phase_ = Phase::peeking;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  bool client_eof_ = false;
  std::string name_, note_;
  Peek::Protocol protocol_ = Peek::Protocol::unknown;
  bool intercept_ = false;  // a header rule's domain: dialled by name, then read (intercept.h)
  Pump up_, down_;
};

class Egress {
 public:
  Egress(asio::io_context& io, const ProxyOptions& o, DeniedSet denied)
      : io_(io), limits_(o.limits), denied_(std::move(denied)), acceptor_(io), dns_udp_(io), dns_tcp_(io), control_(io) {}

  Result<> bind(const ProxyOptions& o);
  Result<> open_resolver(const ProxyOptions& o) {
    auto r = Resolver::open(io_, o.dns_upstream, std::chrono::milliseconds(limits_.dns_timeout_ms));
    if (!r) return std::move(r).error();
    resolver_ = std::move(*r);
    return ok();
  }
  void serve();

  struct Sandbox {
    std::string id;
    std::shared_ptr<const Policy> policy;
    std::vector<HeaderRule> rules;  // applied only with a minter
    std::unordered_set<TcpConn*> conns;
    // Its connections' first bytes are read: a name can change a decision, or pick a rule.
    bool peeks() const { return (policy && policy->has_domains()) || !rules.empty(); }
  };
  Sandbox* sandbox(uint32_t source) {
    auto it = sandboxes_.find(source);
    return it == sandboxes_.end() ? nullptr : &it->second;
  }
  const DeniedSet& denied() const { return denied_; }
  const config::Egress& limits() const { return limits_; }
  Resolver& resolver() { return *resolver_; }
  Minter* minter() { return minter_.get(); }
  Result<> open_minter(const ProxyOptions& o) {
    if (o.ca_cert.empty()) return ok();
    BRIG_TRY_ASSIGN(m, Minter::open(o.ca_cert, o.ca_key, o.upstream_ca));
    minter_ = std::move(m);
    return ok();
  }
  const tcp::endpoint& listen_endpoint() const { return listen_ep_; }
  void set_connection_cap(uint32_t cap) { limits_.connections = std::min(limits_.connections, cap); }
  void decision(Decision d);
  void forget(TcpConn* c) {
    if (auto* sb = sandbox(c->source())) sb->conns.erase(c);
    conns_.erase(c);
  }
  std::string listen_text, dns_text;

 private:
  void accept();
  void read_control();
  void handle_control(const std::string& line);
  void emit(std::string line, bool droppable);
  void flush();
  void close_all(Sandbox& sb, const std::string& why);
  // DNS.
  void udp_receive();
  void dns_tcp_accept();
  void dns_tcp_read(std::shared_ptr<tcp::socket> s, std::shared_ptr<std::vector<uint8_t>> buf,
                    std::shared_ptr<asio::steady_timer> idle);
  using Reply = std::function<void(std::string)>;
  void dns_query(std::span<const uint8_t> bytes, uint32_t source, bool udp, Reply reply);

  asio::io_context& io_;
  config::Egress limits_;
  DeniedSet denied_;
  std::unique_ptr<Resolver> resolver_;
  std::unique_ptr<Minter> minter_;
  tcp::acceptor acceptor_;
  tcp::endpoint listen_ep_;
  udp::socket dns_udp_;
  tcp::acceptor dns_tcp_;
  asio::local::stream_protocol::socket control_;
  std::string control_in_;
  std::deque<std::string> out_;
  bool writing_ = false, read_paused_ = false;
  uint64_t dropped_ = 0;
  std::unordered_map<uint32_t, Sandbox> sandboxes_;
  std::unordered_map<TcpConn*, std::shared_ptr<TcpConn>> conns_;
  std::unordered_map<uint32_t, uint32_t> dns_inflight_;
  size_t dns_tcp_count_ = 0;
  std::vector<uint8_t> udp_buf_;
  udp::endpoint udp_peer_;

  friend class TcpConn;
};

// ---- TcpConn ---------------------------------------------------------------------------------

TcpConn::TcpConn(Egress& e, int fd, uint32_t source, ip::address_v4 dest, uint16_t port)
    : e_(e), client_(e.io_), upstream_(e.io_), timer_(e.io_), source_(source), dest_(dest), port_(port) {
  boost::system::error_code ec;
  client_.assign(tcp::v4(), fd, ec);
  if (ec) ::close(fd);
}

void TcpConn::report(bool allow, const std::string& reason, const std::string& dest) {
  Decision d;
  if (auto* sb = e_.sandbox(source_)) d.sandbox = sb->id;
  d.source = ip::address_v4(source_).to_string();
  d.kind = "tcp";
  d.protocol = protocol_name(protocol_);
  d.name = name_;
  d.dest = dest.empty() ? endpoint_text(dest_, port_) : dest;
  d.allow = allow;
  d.reason = reason;
  if (name_.empty() && !note_.empty()) d.reason += " (no name: " + note_ + ")";
  e_.decision(std::move(d));
}

void TcpConn::start() {
  auto* sb = e_.sandbox(source_);
  if (!client_.is_open() || !sb) {
    if (client_.is_open()) report(false, "unknown source: no sandbox has this address", "");
    close();
    return;
  }
  tcp::endpoint self = e_.listen_endpoint();
  if (dest_ == self.address() && port_ == self.port()) {
    report(false, "a connection to the proxy itself", "");
    close();
    return;
  }
  if (!sb->peeks()) {
    // No domain entry: a name cannot change the decision or the destination, so the bytes of the
    // connection are never looked at.
    phase_ = Phase::deciding;
    decide();
    return;
  }
  buf_.resize(e_.limits().peek_bytes);
  timer_.expires_after(std::chrono::milliseconds(e_.limits().peek_timeout_ms));
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->phase_ != Phase::peeking) return;
    self->note_ = "nothing sent within the peek timeout";
    self->finish_peek(peek(std::span(self->buf_.data(), self->used_), self->buf_.size()));
  });
  read_more();
}

void TcpConn::read_more() {
  client_.async_read_some(asio::buffer(buf_.data() + used_, buf_.size() - used_),
                          [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                            if (self->phase_ != Phase::peeking) return;
                            if (ec == asio::error::eof) {
                              self->client_eof_ = true;
                            } else if (ec) {
                              self->close();
                              return;
                            }
                            self->used_ += n;
                            Peek p = peek(std::span(self->buf_.data(), self->used_), self->buf_.size());
                            if (p.state == Peek::State::done || self->client_eof_ || self->used_ >= self->buf_.size()) {
                              self->finish_peek(p);
                              return;
                            }
                            self->read_more();
                          });
}

void TcpConn::finish_peek(const Peek& p) {
  phase_ = Phase::deciding;
  timer_.cancel();
  boost::system::error_code ec;
  client_.cancel(ec);
  protocol_ = p.protocol;
  name_ = p.name;
  if (!p.note.empty()) note_ = p.note;
  else if (p.state == Peek::State::need_more && note_.empty()) note_ = "incomplete";
  if (used_ == 0 && client_eof_) {  // the sandbox closed without a word: nothing to decide
    close();
    return;
  }
  decide();
}

void TcpConn::decide() {
  auto* sb = e_.sandbox(source_);
  if (!sb) {
    report(false, "unknown source: no sandbox has this address", "");
    close();
    return;
  }
  Verdict v = egress::decide(sb->policy.get(), e_.denied(), {dest_, port_, name_});
  if (!v.allow) {
    report(false, v.reason, "");
    close();
    return;
  }
  // HTTPS to a header rule's domain: read and changed by brig egress, so dialled by name whatever
  // allowed it (the secret goes to the name's own address, verified as the name).
  intercept_ = e_.minter() && protocol_ == Peek::Protocol::tls && !name_.empty() && match_rule(sb->rules, name_);
  phase_ = Phase::connecting;
  timer_.expires_after(std::chrono::milliseconds(e_.limits().connect_timeout_ms));
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->phase_ != Phase::connecting) return;
    spdlog::debug("egress: {} -> {}: connect timed out", ip::address_v4(self->source_).to_string(),
                  endpoint_text(self->dest_, self->port_));
    self->close();
  });
  if (!v.dial_name() && !intercept_) {
    report(true, v.reason, "");
    connect_to(std::make_shared<std::vector<ip::address_v4>>(1, dest_), 0);
    return;
  }
  e_.resolver().resolve4(name_, [self = shared_from_this(), reason = v.reason](std::vector<ip::address_v4> addrs,
                                                                                std::string error) {
    self->on_resolved(std::move(addrs), error, reason);
  });
}

void TcpConn::on_resolved(std::vector<ip::address_v4> addrs, const std::string& error, const std::string& reason) {
  if (phase_ != Phase::connecting) return;
  if (!error.empty()) {
    report(false, reason + ", but " + name_ + " does not resolve: " + error, "");
    close();
    return;
  }
  auto usable = std::make_shared<std::vector<ip::address_v4>>();
  std::string refused;
  for (const auto& a : addrs) {
    if (auto range = e_.denied().match(a)) {
      if (refused.empty()) refused = a.to_string() + " in " + *range;
    } else if (usable->size() < 4) {
      usable->push_back(a);
    }
  }
  if (usable->empty()) {
    report(false, reason + ", but " + name_ + " resolves only to always-denied addresses (" + refused + ")", "");
    close();
    return;
  }
  std::string why = reason + "; dialled by name";
  if (intercept_) {  // the rule as it is now: the policy may have changed while the name resolved
    auto* sb = e_.sandbox(source_);
    const HeaderRule* rule = sb ? match_rule(sb->rules, name_) : nullptr;
    why += rule ? "; header rule " + rule->domain : "; its header rule is gone";
  }
  if ((*usable)[0] != dest_) why += " (the sandbox asked for " + endpoint_text(dest_, port_) + ")";
  report(true, why, endpoint_text((*usable)[0], port_));
  connect_to(usable, 0);
}

void TcpConn::connect_to(std::shared_ptr<std::vector<ip::address_v4>> addrs, size_t i) {
  if (phase_ != Phase::connecting) return;
  if (i >= addrs->size()) {
    spdlog::debug("egress: {} -> {}: could not connect", ip::address_v4(source_).to_string(), endpoint_text(dest_, port_));
    close();
    return;
  }
  boost::system::error_code ec;
  upstream_.close(ec);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    close();
    return;
  }
  upstream_.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    close();
    return;
  }
  upstream_.async_connect(tcp::endpoint((*addrs)[i], port_),
                          [self = shared_from_this(), addrs, i](boost::system::error_code ec) {
                            if (self->phase_ != Phase::connecting) return;
                            if (ec) {
                              self->connect_to(addrs, i + 1);
                              return;
                            }
                            self->connected();
                          });
}

void TcpConn::connected() {
  phase_ = Phase::relaying;
  timer_.cancel();
  if (intercept_) {
    start_intercept();
    return;
  }
  if (used_ == 0) {
    start_pumps();
    return;
  }
  asio::async_write(upstream_, asio::buffer(buf_.data(), used_),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (self->phase_ != Phase::relaying) return;
                      if (ec) {
                        self->close();
                        return;
                      }
                      std::vector<uint8_t>().swap(self->buf_);
                      self->start_pumps();
                    });
}

void TcpConn::start_intercept() {
  auto server = e_.minter()->server(name_);
  if (!server) {
    spdlog::warn("egress: no certificate for {}: {}", name_, server.error().message());
    close();
    return;
  }
  std::vector<uint8_t> hello(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(used_));
  std::vector<uint8_t>().swap(buf_);
  auto self = shared_from_this();
  Intercept in{client_, std::move(hello), upstream_, name_, std::move(*server), e_.minter()->client(),
               [self]() -> std::optional<HeaderRule> {
                 auto* sb = self->e_.sandbox(self->source_);
                 const HeaderRule* r = sb ? match_rule(sb->rules, self->name_) : nullptr;
                 return r ? std::optional<HeaderRule>(*r) : std::nullopt;
               },
               e_.limits().peek_bytes * 4};
  intercept(e_.io_, std::move(in), [self](const std::string& why) {
    if (!why.empty()) spdlog::debug("egress: {} -> {}: {}", ip::address_v4(self->source_).to_string(), self->name_, why);
    self->close();
  });
}

void TcpConn::start_pumps() {
  for (Pump* p : {&up_, &down_}) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      spdlog::warn("egress: pipe2: {}", std::strerror(errno));
      close();
      return;
    }
    p->pipe_r.reset(fds[0]);
    p->pipe_w.reset(fds[1]);
  }
  up_.from = &client_, up_.to = &upstream_;
  down_.from = &upstream_, down_.to = &client_;
  up_.eof = client_eof_;
  pump(up_);
  if (phase_ == Phase::relaying) pump(down_);
}

void TcpConn::pump(Pump& p) {
  for (int round = 0; round < kSpliceRounds * 2; ++round) {
    if (phase_ != Phase::relaying) return;
    if (p.in_pipe > 0) {
      ssize_t n = ::splice(p.pipe_r.get(), nullptr, p.to->native_handle(), nullptr, p.in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        p.in_pipe -= static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        p.to->async_wait(tcp::socket::wait_write, [self = shared_from_this(), &p](boost::system::error_code ec) {
          if (!ec) self->pump(p);
        });
        return;
      }
      close();
      return;
    }
    if (p.eof) {
      ::shutdown(p.to->native_handle(), SHUT_WR);
      p.done = true;
      if (up_.done && down_.done) close();
      return;
    }
    ssize_t n = ::splice(p.from->native_handle(), nullptr, p.pipe_w.get(), nullptr, kSpliceChunk,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      p.in_pipe = static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      p.eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      p.from->async_wait(tcp::socket::wait_read, [self = shared_from_this(), &p](boost::system::error_code ec) {
        if (!ec) self->pump(p);
      });
      return;
    }
    close();
    return;
  }
  // This connection had its share of the loop; the others get theirs before it goes on.
  asio::post(e_.io_, [self = shared_from_this(), &p] { self->pump(p); });
}

void TcpConn::recheck(const Policy* policy) {
  if (phase_ == Phase::peeking || phase_ == Phase::closed) return;  // judged later, under the new policy
  Verdict v = egress::decide(policy, e_.denied(), {dest_, port_, name_});
  if (v.allow) return;
  report(false, "cut: the policy changed: " + v.reason, "");
  close();
}

void TcpConn::close() {
  if (phase_ == Phase::closed) return;
  auto keep = shared_from_this();
  phase_ = Phase::closed;
  boost::system::error_code ec;
  timer_.cancel();
  client_.close(ec);
  upstream_.close(ec);
  up_.pipe_r.reset(), up_.pipe_w.reset(), down_.pipe_r.reset(), down_.pipe_w.reset();
  e_.forget(this);
}

// ---- Egress: sockets, control ----------------------------------------------------------------

Result<> Egress::bind(const ProxyOptions& o) {
  BRIG_TRY_ASSIGN(ep, parse_endpoint(o.listen));
  BRIG_TRY_ASSIGN(fd, bound_socket(SOCK_STREAM, ep));
  listen_text = local_text(fd.get());
  BRIG_TRY_ASSIGN(bound, parse_endpoint(listen_text));
  listen_ep_ = bound;
  boost::system::error_code ec;
  acceptor_.assign(tcp::v4(), fd.release(), ec);
  if (ec) return Error::make(errc::unsupported, "acceptor: " + ec.message());
  if (!o.dns_listen.empty()) {
    BRIG_TRY_ASSIGN(dep, parse_endpoint(o.dns_listen));
    // TCP on the same port as UDP. With port 0 the port UDP got may be taken for TCP: try
    // another (a bounded number of times).
    Fd ufd, tfd;
    for (int attempt = 0;; ++attempt) {
      BRIG_TRY_ASSIGN(u, bound_socket(SOCK_DGRAM, dep));
      dns_text = local_text(u.get());
      BRIG_TRY_ASSIGN(actual, parse_endpoint(dns_text));
      auto t = bound_socket(SOCK_STREAM, actual);
      if (t) {
        ufd = std::move(u);
        tfd = std::move(*t);
        break;
      }
      if (dep.port() != 0 || t.error().sys_errno() != EADDRINUSE || attempt == 15) return t.error();
    }
    dns_udp_.assign(udp::v4(), ufd.release(), ec);
    if (!ec) dns_tcp_.assign(tcp::v4(), tfd.release(), ec);
    if (ec) return Error::make(errc::unsupported, "DNS sockets: " + ec.message());
  }
  if (o.control_fd >= 0) {
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(o.control_fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
      return Error::make(errc::invalid_argument, "--control-fd " + std::to_string(o.control_fd) + " is not a stream socket");
    (void)fcntl(o.control_fd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(o.control_fd, F_SETFL, fcntl(o.control_fd, F_GETFL) | O_NONBLOCK);
    control_.assign(asio::local::stream_protocol(), o.control_fd, ec);
    if (ec) return Error::make(errc::unsupported, "control channel: " + ec.message());
  }
  return ok();
}

void Egress::serve() {
  udp_buf_.resize(limits_.dns_query_bytes + 1);
  accept();
  if (dns_udp_.is_open()) {
    udp_receive();
    dns_tcp_accept();
  }
  emit(encode_event(Ready{listen_text, dns_text}), false);
  if (control_.is_open()) read_control();
}

void Egress::accept() {
  acceptor_.async_wait(tcp::acceptor::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;
    for (int i = 0; i < 64; ++i) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      // accept4 for CLOEXEC from the start (Asio's accept sets no flag on the new socket).
      int fd = ::accept4(acceptor_.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len,  // SAFETY: sockaddr_in
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)) {
        // Out of descriptors: the pending connection stays queued; try again in a moment rather
        // than spin on a listener that stays readable.
        spdlog::warn("egress: accept: {}", std::strerror(errno));
        auto later = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
        later->async_wait([this, later](boost::system::error_code) { accept(); });
        return;
      }
      if (fd < 0) break;
      sockaddr_in orig{};
      socklen_t olen = sizeof orig;
      uint32_t source = ntohl(peer.sin_addr.s_addr);
      if (getsockopt(fd, SOL_IP, kSoOriginalDst, &orig, &olen) != 0 || peer.sin_family != AF_INET) {
        spdlog::debug("egress: connection from {} without an original destination", ip::address_v4(source).to_string());
        ::close(fd);
        continue;
      }
      ip::address_v4 dest(ntohl(orig.sin_addr.s_addr));
      uint16_t port = ntohs(orig.sin_port);
      auto* sb = sandbox(source);
      if (conns_.size() >= limits_.connections || (sb && sb->conns.size() >= limits_.connections_per_sandbox)) {
        ::close(fd);
        Decision d;
        d.sandbox = sb ? sb->id : "";
        d.source = ip::address_v4(source).to_string();
        d.kind = "tcp";
        d.protocol = "unknown";
        d.dest = endpoint_text(dest, port);
        d.reason = "too many connections";
        decision(std::move(d));
        continue;
      }
      auto conn = std::make_shared<TcpConn>(*this, fd, source, dest, port);
      conns_.emplace(conn.get(), conn);
      if (sb) sb->conns.insert(conn.get());
      conn->start();
    }
    accept();
  });
}

void Egress::decision(Decision d) {
  d.time_ms = now_unix_ms();
  spdlog::debug("egress: {} {} {} {} -> {}: {}", d.sandbox, d.kind, d.name, d.dest, d.allow ? "allow" : "deny", d.reason);
  emit(encode_event(d), true);
}

void Egress::emit(std::string line, bool droppable) {
  if (!control_.is_open()) return;
  if (droppable && out_.size() >= limits_.decision_backlog) {
    ++dropped_;
    return;
  }
  if (dropped_) {
    out_.push_back(encode_event(Dropped{dropped_}));
    dropped_ = 0;
  }
  out_.push_back(std::move(line));
  flush();
}

void Egress::flush() {
  if (writing_ || out_.empty()) return;
  writing_ = true;
  asio::async_write(control_, asio::buffer(out_.front()), [this](boost::system::error_code ec, size_t) {
    writing_ = false;
    if (ec) {
      spdlog::info("egress: control channel closed ({}); exiting", ec.message());
      io_.stop();
      return;
    }
    out_.pop_front();
    flush();
    if (read_paused_ && out_.size() < limits_.decision_backlog) {
      read_paused_ = false;
      read_control();
    }
  });
}

void Egress::read_control() {
  if (out_.size() >= limits_.decision_backlog) {  // the daemon reads nothing: stop taking requests
    read_paused_ = true;
    return;
  }
  asio::async_read_until(control_, asio::dynamic_buffer(control_in_, kMaxControlLine + 1), '\n',
                         [this](boost::system::error_code ec, size_t n) {
                           if (ec) {
                             if (ec != asio::error::eof)
                               spdlog::error("egress: control channel: {}", ec == asio::error::not_found
                                                                                ? "a line longer than 1 MiB"
                                                                                : ec.message());
                             io_.stop();  // the daemon is gone (or broke the protocol): so is the proxy
                             return;
                           }
                           std::string line = control_in_.substr(0, n - 1);
                           control_in_.erase(0, n);
                           handle_control(line);
                           read_control();
                         });
}

void Egress::close_all(Sandbox& sb, const std::string& why) {
  std::vector<TcpConn*> list(sb.conns.begin(), sb.conns.end());
  for (TcpConn* c : list) {
    auto it = conns_.find(c);
    if (it == conns_.end()) continue;
    auto keep = it->second;
    spdlog::debug("egress: closing a connection of {}: {}", sb.id, why);
    keep->close();
  }
  sb.conns.clear();
}

void Egress::handle_control(const std::string& line) {
  auto req = parse_request(line);
  if (!req) {
    emit(encode_event(Ack{request_id(line), req.error().message()}), false);
    return;
  }
  uint64_t id = req->id;
  auto fail = [&](std::string message) { emit(encode_event(Ack{id, std::move(message)}), false); };
  if (const auto* set = std::get_if<SetPolicy>(&req->op)) {
    boost::system::error_code ec;
    auto src = ip::make_address_v4(set->source, ec);
    if (ec) return fail("source \"" + set->source.substr(0, 64) + "\" is not an IPv4 address");
    if (set->sandbox.empty() || set->sandbox.size() > 64) return fail("sandbox id must be 1-64 characters");
    auto policy = parse_policy(set->allow_out, set->deny_out);
    if (!policy) return fail(policy.error().message());
    for (const auto& r : set->rules) {
      std::string_view bare = r.domain.starts_with("*.") ? std::string_view(r.domain).substr(2) : std::string_view(r.domain);
      if (normalize_name(bare) != std::string(bare)) return fail("rule domain \"" + r.domain.substr(0, 64) + "\" is not a host name");
    }
    uint32_t key = src.to_uint();
    auto it = sandboxes_.find(key);
    if (it == sandboxes_.end()) {
      if (sandboxes_.size() >= kMaxSandboxes) return fail("too many sandboxes");
      it = sandboxes_.emplace(key, Sandbox{}).first;
    } else if (it->second.id != set->sandbox) {
      close_all(it->second, "the address now belongs to another sandbox");
    }
    it->second.id = set->sandbox;
    it->second.policy = std::make_shared<const Policy>(std::move(*policy));
    it->second.rules = set->rules;  // open intercepted connections read it at their next request
    // A narrowing closes what the new policy denies.
    std::vector<TcpConn*> list(it->second.conns.begin(), it->second.conns.end());
    for (TcpConn* c : list) {
      auto found = conns_.find(c);
      if (found == conns_.end()) continue;
      auto keep = found->second;
      keep->recheck(it->second.policy.get());
    }
  } else {
    const auto& rm = std::get<RemovePolicy>(req->op);
    boost::system::error_code ec;
    auto src = ip::make_address_v4(rm.source, ec);
    if (ec) return fail("source \"" + rm.source.substr(0, 64) + "\" is not an IPv4 address");
    if (auto it = sandboxes_.find(src.to_uint()); it != sandboxes_.end()) {
      close_all(it->second, "the sandbox was removed");
      sandboxes_.erase(it);
    }
  }
  emit(encode_event(Ack{id, {}}), false);
}

// ---- DNS stub --------------------------------------------------------------------------------

void Egress::udp_receive() {
  dns_udp_.async_receive_from(asio::buffer(udp_buf_), udp_peer_, [this](boost::system::error_code ec, size_t n) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec && udp_peer_.address().is_v4()) {
      udp::endpoint peer = udp_peer_;
      uint32_t source = peer.address().to_v4().to_uint();
      int fd = dns_udp_.native_handle();
      auto reply = [fd, peer](std::string answer) {
        if (answer.empty()) return;
        // Non-blocking: a datagram the kernel cannot take now is lost, as UDP allows.
        (void)::sendto(fd, answer.data(), answer.size(), MSG_DONTWAIT, peer.data(), peer.size());
      };
      // A query larger than the bound is dropped unanswered (no stub resolver sends one).
      if (n <= limits_.dns_query_bytes) dns_query(std::span(udp_buf_.data(), n), source, true, std::move(reply));
    }
    udp_receive();
  });
}

void Egress::dns_tcp_accept() {
  dns_tcp_.async_wait(tcp::acceptor::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;
    for (int i = 0; i < 64; ++i) {
      int fd = ::accept4(dns_tcp_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)) {
        auto later = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
        later->async_wait([this, later](boost::system::error_code) { dns_tcp_accept(); });
        return;
      }
      if (fd < 0) break;
      if (dns_tcp_count_ >= limits_.dns_tcp_connections) {
        ::close(fd);
        continue;
      }
      auto s = std::make_shared<tcp::socket>(io_);
      boost::system::error_code aec;
      s->assign(tcp::v4(), fd, aec);
      if (aec) {
        ::close(fd);
        continue;
      }
      ++dns_tcp_count_;
      auto idle = std::make_shared<asio::steady_timer>(io_);
      dns_tcp_read(s, std::make_shared<std::vector<uint8_t>>(), idle);
    }
    dns_tcp_accept();
  });
}

void Egress::dns_tcp_read(std::shared_ptr<tcp::socket> s, std::shared_ptr<std::vector<uint8_t>> buf,
                          std::shared_ptr<asio::steady_timer> idle) {
  auto done = [this, s, idle] {
    if (!s->is_open()) return;
    boost::system::error_code ec;
    s->close(ec);
    idle->cancel();
    --dns_tcp_count_;
  };
  // A connection that sends no complete query within the timeout (twice the upstream's) is closed.
  idle->expires_after(std::chrono::milliseconds(2 * limits_.dns_timeout_ms));
  idle->async_wait([s, done](boost::system::error_code ec) {
    if (!ec) done();
  });
  buf->resize(2);
  asio::async_read(*s, asio::buffer(*buf), [this, s, buf, idle, done](boost::system::error_code ec, size_t) {
    if (ec) return done();
    size_t len = (size_t{(*buf)[0]} << 8) | (*buf)[1];
    if (len < 12 || len > limits_.dns_query_bytes) return done();
    buf->resize(len);
    asio::async_read(*s, asio::buffer(*buf), [this, s, buf, idle, done](boost::system::error_code ec, size_t) {
      if (ec) return done();
      sockaddr_in peer{};
      socklen_t plen = sizeof peer;
      if (getpeername(s->native_handle(), reinterpret_cast<sockaddr*>(&peer), &plen) != 0) return done();  // SAFETY: sockaddr_in
      idle->cancel();
      dns_query(std::span(buf->data(), buf->size()), ntohl(peer.sin_addr.s_addr), false,
                [this, s, buf, idle, done](std::string answer) {
                  if (!s->is_open()) return;
                  if (answer.empty() || answer.size() > 65535) return done();
                  auto out = std::make_shared<std::string>();
                  out->push_back(static_cast<char>(answer.size() >> 8));
                  out->push_back(static_cast<char>(answer.size() & 0xff));
                  *out += answer;
                  asio::async_write(*s, asio::buffer(*out), [this, s, buf, idle, done, out](boost::system::error_code ec, size_t) {
                    if (ec) return done();
                    dns_tcp_read(s, buf, idle);
                  });
                });
    });
  });
}

void Egress::dns_query(std::span<const uint8_t> bytes, uint32_t source, bool udp, Reply reply) {
  auto* sb = sandbox(source);
  DnsReject rej;
  auto q = parse_dns_query(bytes, rej);
  auto report = [this, source](const std::string& sandbox_id, const std::string& type, const std::string& name,
                               bool allow, std::string reason) {
    Decision d;
    d.sandbox = sandbox_id;
    d.source = ip::address_v4(source).to_string();
    d.kind = "dns";
    d.protocol = type;
    d.name = name;
    d.allow = allow;
    d.reason = std::move(reason);
    decision(std::move(d));
  };
  if (!q) {
    reply(rej.response);
    if (sb) report(sb->id, "", "", false, "malformed query: " + rej.why);
    return;
  }
  std::string type = std::to_string(q->qtype);
  if (q->qtype == 1) type = "A";
  else if (q->qtype == 28) type = "AAAA";
  std::string shown = q->name.empty() ? q->question.substr(0, 255) : q->name;
  if (!sb) {
    reply(dns_refusal(*q, Rcode::refused));
    return;
  }
  if (sb->policy && sb->policy->strict_dns() && (q->name.empty() || !name_allowed(*sb->policy, q->name))) {
    reply(dns_refusal(*q, Rcode::nxdomain));
    report(sb->id, type, shown, false, "no allowOut domain matches (NXDOMAIN)");
    return;
  }
  uint32_t& inflight = dns_inflight_[source];
  if (inflight >= limits_.dns_inflight_per_sandbox) {
    reply(dns_refusal(*q, Rcode::servfail));
    report(sb->id, type, shown, false, "too many queries in flight (SERVFAIL)");
    return;
  }
  ++inflight;
  resolver_->send(q->upstream, [this, source, udp, q = *q, reply = std::move(reply), report, id = sb->id, type,
                                shown](std::string answer, std::string error) {
    if (auto it = dns_inflight_.find(source); it != dns_inflight_.end() && --it->second == 0) dns_inflight_.erase(it);
    if (!error.empty()) {
      reply(dns_refusal(q, Rcode::servfail));
      report(id, type, shown, false, "upstream: " + error + " (SERVFAIL)");
      return;
    }
    AnswerCheck check = check_dns_answer(std::span(reinterpret_cast<const uint8_t*>(answer.data()), answer.size()), denied_);
    if (!check.ok) {
      reply(dns_refusal(q, check.denied.empty() ? Rcode::servfail : Rcode::refused));
      report(id, type, shown, false, check.why + (check.denied.empty() ? " (SERVFAIL)" : " (REFUSED)"));
      return;
    }
    answer = with_dns_id(std::move(answer), q.id);
    if (udp && answer.size() > q.udp_limit) answer = dns_truncated(q);
    reply(std::move(answer));
    report(id, type, shown, true, "answered");
  });
}

// ---- setup -----------------------------------------------------------------------------------

Result<> drop_privileges(const ProxyOptions::Identity& id) {
  if (setgroups(0, nullptr) != 0) return Error::from_errno(errno, "setgroups");
  if (setresgid(id.gid, id.gid, id.gid) != 0) return Error::from_errno(errno, "setresgid");
  if (setresuid(id.uid, id.uid, id.uid) != 0) return Error::from_errno(errno, "setresuid");
  if (id.uid != 0 && setuid(0) == 0) return Error::make(errc::unsupported, "could become root again after dropping");
  return ok();
}

// Raises the soft descriptor limit to what the bounds need (each connection: two sockets and
// two pipes), within the hard limit; returns how many connections fit in what it got.
uint32_t raise_fd_limit(const config::Egress& l) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return l.connections;
  rlim_t reserve = static_cast<rlim_t>(l.dns_tcp_connections) + 256;
  rlim_t want = static_cast<rlim_t>(l.connections) * 6 + reserve;
  rlim_t target = std::min(want, rl.rlim_max);
  if (target > rl.rlim_cur) {
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) target = rl.rlim_cur = std::min(target, rl.rlim_cur);
  } else {
    target = rl.rlim_cur;
  }
  if (target >= want) return l.connections;
  auto fit = static_cast<uint32_t>(target > reserve + 6 ? (target - reserve) / 6 : 1);
  spdlog::warn("egress: the descriptor limit ({}) holds {} connections, not egress.connections = {}", target, fit,
               l.connections);
  return fit;
}

}  // namespace

int run_proxy(const ProxyOptions& o) {
  auto fail = [](const Error& e) {
    std::cerr << "brig egress: " << e.message() << "\n";
    return 1;
  };
  std::vector<std::variant<Net4, Net6>> extra;
  for (const auto& d : o.deny) {
    auto n = parse_net(d);
    if (!n) return fail(Error::make(errc::invalid_argument, "--deny \"" + d + "\" is not an IP address or CIDR"));
    extra.push_back(*n);
  }
  signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  Egress e(io, o, DeniedSet(std::move(extra)));
  if (auto r = e.bind(o); !r) return fail(r.error());
  if (auto r = e.open_resolver(o); !r) return fail(r.error());
  // Without its CA (or the upstream bundle) brig egress still enforces every policy; header
  // rules are then not applied: their connections are relayed unread, like any other.
  if (auto r = e.open_minter(o); !r) spdlog::error("egress: header rules are not applied: {}", r.error().message());
  e.set_connection_cap(raise_fd_limit(o.limits));
  // What must happen before the filter: OpenSSL reads its configuration when first used, the
  // log's clock its time zone.
  static const uint8_t kWarm[] = {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00};
  (void)peek(kWarm, sizeof kWarm);
  auto prog = policy::compile_egress_policy();
  if (!prog) return fail(prog.error());
  if (o.run_as) {
    if (auto r = drop_privileges(*o.run_as); !r) return fail(r.error());
  } else if (geteuid() == 0) {
    return fail(Error::make(errc::invalid_argument, "refusing to run as root: give a user to run as"));
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail(Error::from_errno(errno, "prctl(NO_NEW_PRIVS)"));
#ifndef __SANITIZE_ADDRESS__  // LeakSanitizer's exit check ptraces the process from a task of its own
  (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
  spdlog::info("egress: proxy on {}, DNS on {}, upstream {}", e.listen_text, e.dns_text.empty() ? "-" : e.dns_text,
               e.resolver().servers());
  if (auto r = policy::install_seccomp(*prog); !r) return fail(r.error());
  e.serve();
  io.run();
  return 0;
}

}  // namespace brig::egress
