#include "egress/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unordered_map>

namespace brig::egress {

namespace asio = boost::asio;

namespace {

// c-ares's sockets, created close-on-exec and non-blocking from the start.
ares_socket_t open_socket(int domain, int type, int protocol, void*) {
  return ::socket(domain, type | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
}
int close_socket(ares_socket_t fd, void*) { return ::close(fd); }
int connect_socket(ares_socket_t fd, const struct sockaddr* addr, ares_socklen_t len, void*) {
  return ::connect(fd, addr, len);
}
ares_ssize_t recv_socket(ares_socket_t fd, void* buf, size_t len, int flags, struct sockaddr* from, ares_socklen_t* fromlen,
                         void*) {
  return ::recvfrom(fd, buf, len, flags, from, fromlen);
}
ares_ssize_t send_socket(ares_socket_t fd, const struct iovec* iov, int n, void*) { return ::writev(fd, iov, n); }
const ares_socket_functions kSocketFunctions = {open_socket, close_socket, connect_socket, recv_socket, send_socket};

struct Watch {
  explicit Watch(asio::io_context& io, int fd) : sd(io, fd) {}
  asio::posix::stream_descriptor sd;
  bool want_read = false, want_write = false, reading = false, writing = false, dead = false;
};

}  // namespace

struct Resolver::Impl {
  explicit Impl(asio::io_context& io_) : io(io_), timer(io_) {}
  asio::io_context& io;
  ares_channel channel = nullptr;
  asio::steady_timer timer;
  std::unordered_map<int, std::shared_ptr<Watch>> watches;
  bool destroying = false;

  static void sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    auto it = self->watches.find(fd);
    if (!readable && !writable) {  // c-ares is about to close it
      if (it != self->watches.end()) {
        it->second->dead = true;
        boost::system::error_code ec;
        (void)it->second->sd.release();  // cancels the waits; c-ares closes the fd
        self->watches.erase(it);
      }
      return;
    }
    if (self->destroying) return;
    if (it == self->watches.end()) it = self->watches.emplace(fd, std::make_shared<Watch>(self->io, fd)).first;
    it->second->want_read = readable;
    it->second->want_write = writable;
    self->arm(it->second, fd);
  }

  void arm(const std::shared_ptr<Watch>& w, int fd) {
    if (w->want_read && !w->reading) {
      w->reading = true;
      w->sd.async_wait(asio::posix::stream_descriptor::wait_read, [this, w, fd](boost::system::error_code ec) {
        w->reading = false;
        if (w->dead || ec) return;
        process(fd, ARES_SOCKET_BAD);
        if (!w->dead) arm(w, fd);
      });
    }
    if (w->want_write && !w->writing) {
      w->writing = true;
      w->sd.async_wait(asio::posix::stream_descriptor::wait_write, [this, w, fd](boost::system::error_code ec) {
        w->writing = false;
        if (w->dead || ec) return;
        process(ARES_SOCKET_BAD, fd);
        if (!w->dead) arm(w, fd);
      });
    }
  }

  void process(int rfd, int wfd) {
    ares_process_fd(channel, rfd, wfd);
    reschedule();
  }

  void reschedule() {
    struct timeval tv {};
    if (!ares_timeout(channel, nullptr, &tv)) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    });
  }
};

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Resolver::~Resolver() {
  if (!impl_ || !impl_->channel) return;
  impl_->destroying = true;
  ares_destroy(impl_->channel);  // pending callbacks run with ARES_EDESTRUCTION and post nothing
  for (auto& [fd, w] : impl_->watches) {
    w->dead = true;
    (void)w->sd.release();
  }
}

Result<std::unique_ptr<Resolver>> Resolver::open(asio::io_context& io, const std::vector<std::string>& servers,
                                                 std::chrono::milliseconds timeout) {
  static const int init = ares_library_init(ARES_LIB_INIT_ALL);
  if (init != ARES_SUCCESS) return Error::make(errc::unsupported, std::string("ares_library_init: ") + ares_strerror(init));
  auto impl = std::make_unique<Impl>(io);
  ares_options opts{};
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS |
             ARES_OPT_SOCK_STATE_CB;
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  // Two tries per server within the timeout.
  opts.timeout = static_cast<int>(std::max<int64_t>(timeout.count() / 2, 50));
  opts.tries = 2;
  char lookups[] = "b";  // DNS only: never the hosts file
  opts.lookups = lookups;
  opts.domains = nullptr;
  opts.ndomains = 0;
  opts.sock_state_cb = &Impl::sock_state;
  opts.sock_state_cb_data = impl.get();
  if (int rc = ares_init_options(&impl->channel, &opts, mask); rc != ARES_SUCCESS)
    return Error::make(errc::unsupported, std::string("ares_init_options: ") + ares_strerror(rc));
  ares_set_socket_functions(impl->channel, &kSocketFunctions, nullptr);
  std::unique_ptr<Resolver> r(new Resolver(std::move(impl)));
  if (!servers.empty()) {
    std::string csv;
    for (const auto& s : servers) csv += (csv.empty() ? "" : ",") + s;
    if (int rc = ares_set_servers_ports_csv(r->impl_->channel, csv.c_str()); rc != ARES_SUCCESS)
      return Error::make(errc::invalid_argument, "DNS upstream \"" + csv + "\": " + ares_strerror(rc));
  }
  if (r->servers().empty()) return Error::make(errc::unsupported, "no DNS upstream (none given, none in /etc/resolv.conf)");
  return r;
}

std::string Resolver::servers() const {
  ares_addr_port_node* list = nullptr;
  if (ares_get_servers_ports(impl_->channel, &list) != ARES_SUCCESS) return {};
  std::string out;
  for (auto* n = list; n; n = n->next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (!inet_ntop(n->family, &n->addr, text, sizeof text)) continue;
    out += (out.empty() ? "" : ",") + std::string(text) + ":" + std::to_string(n->udp_port ? n->udp_port : 53);
  }
  ares_free_data(list);
  return out;
}

void Resolver::resolve4(const std::string& name, AddressesDone done) {
  struct Call {
    Impl* impl;
    AddressesDone done;
  };
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_INET;
  hints.ai_flags = ARES_AI_NOSORT;
  auto* call = new Call{impl_.get(), std::move(done)};
  ares_getaddrinfo(
      impl_->channel, name.c_str(), nullptr, &hints,
      [](void* arg, int status, int, ares_addrinfo* res) {
        std::unique_ptr<Call> c(static_cast<Call*>(arg));
        std::vector<asio::ip::address_v4> addrs;
        for (auto* n = res ? res->nodes : nullptr; n && addrs.size() < 16; n = n->ai_next) {
          if (n->ai_family != AF_INET || !n->ai_addr) continue;
          const auto* sin = reinterpret_cast<const sockaddr_in*>(n->ai_addr);  // SAFETY: ai_family is AF_INET
          addrs.emplace_back(ntohl(sin->sin_addr.s_addr));
        }
        if (res) ares_freeaddrinfo(res);
        if (c->impl->destroying) return;
        std::string error = status == ARES_SUCCESS ? "" : ares_strerror(status);
        if (status == ARES_SUCCESS && addrs.empty()) error = "no IPv4 address";
        asio::post(c->impl->io, [done = std::move(c->done), addrs = std::move(addrs), error = std::move(error)]() mutable {
          done(std::move(addrs), std::move(error));
        });
      },
      call);
  impl_->reschedule();
}

void Resolver::send(const std::string& query, AnswerDone done) {
  struct Call {
    Impl* impl;
    AnswerDone done;
  };
  auto* call = new Call{impl_.get(), std::move(done)};
  ares_send(
      impl_->channel, reinterpret_cast<const unsigned char*>(query.data()), static_cast<int>(query.size()),
      [](void* arg, int status, int, unsigned char* abuf, int alen) {
        std::unique_ptr<Call> c(static_cast<Call*>(arg));
        if (c->impl->destroying) return;
        std::string answer, error;
        if (status == ARES_SUCCESS && abuf && alen > 0) answer.assign(reinterpret_cast<const char*>(abuf), alen);
        else error = ares_strerror(status);
        asio::post(c->impl->io, [done = std::move(c->done), answer = std::move(answer), error = std::move(error)]() mutable {
          done(std::move(answer), std::move(error));
        });
      },
      call);
  impl_->reschedule();
}

}  // namespace brig::egress
