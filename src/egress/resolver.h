// Name resolution for brig-egress with c-ares, driven by the proxy's Boost.Asio loop (c-ares's
// sockets are watched with posix::stream_descriptor waits, its timeouts with a steady_timer): the
// proxy resolves the names it dials itself, and the DNS stub sends its upstream queries here.
//
// DNS only: no hosts file (lookups "b"), no search domains (a name is resolved as given), the
// servers given or else /etc/resolv.conf's, read once at open. c-ares's sockets are created
// CLOEXEC and non-blocking. Completions are posted to the loop, never run inside a c-ares call.
//
// Thread safety: single-threaded; every call on the loop's thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v4.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace brig::egress {

class Resolver {
 public:
  using AddressesDone = std::function<void(std::vector<boost::asio::ip::address_v4>, std::string error)>;
  using AnswerDone = std::function<void(std::string answer, std::string error)>;

  // `servers`: "IP" or "IP:PORT" entries; empty: the nameservers of /etc/resolv.conf.
  static Result<std::unique_ptr<Resolver>> open(boost::asio::io_context& io, const std::vector<std::string>& servers,
                                                std::chrono::milliseconds timeout);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The IPv4 addresses of `name` (A records, CNAMEs followed).
  void resolve4(const std::string& name, AddressesDone done);
  // Sends the DNS query `query` (wire form) upstream and returns the answer (wire form, its id
  // c-ares's own), retried and over TCP when truncated, as c-ares does.
  void send(const std::string& query, AnswerDone done);
  // The servers in use, "IP:PORT,..." (for the log).
  std::string servers() const;

  struct Impl;

 private:
  explicit Resolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace brig::egress
