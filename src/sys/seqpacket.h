// One message = one SOCK_SEQPACKET datagram, optionally carrying fds (SCM_RIGHTS).
// Received fds are always O_CLOEXEC (MSG_CMSG_CLOEXEC); a truncated datagram or fd list is a
// protocol error and every fd that did arrive is closed.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace brig::sys {

inline constexpr size_t kMaxMessageBytes = 256 * 1024;
inline constexpr size_t kMaxMessageFds = 8;

struct Packet {
  std::string data;
  std::vector<Fd> fds;
};

// A connected SOCK_SEQPACKET pair, both ends CLOEXEC.
Result<std::pair<Fd, Fd>> seqpacket_pair();

// A SOCK_SEQPACKET unix socket listening at `path` (replacing a stale file), created 0600 so
// only its owner (root) can connect.
Result<Fd> seqpacket_listen(const std::string& path);
// A SOCK_SEQPACKET connection to the unix socket at `path`.
// Connects to the listener at `path`, waiting at most `timeout` for room in its backlog.
Result<Fd> seqpacket_connect(const std::string& path, std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Sends `data` with `fds` (borrowed; the caller still owns them). On a non-blocking socket it
// waits for room as a blocking one would.
[[nodiscard]] Result<> send_packet(int sock, std::string_view data, std::span<const int> fds = {});
// Receives one packet; an orderly shutdown of the peer is errc::not_found ("peer closed"); an
// empty non-blocking socket is the errno EAGAIN.
[[nodiscard]] Result<Packet> recv_packet(int sock);

}  // namespace brig::sys
