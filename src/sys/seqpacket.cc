#include "sys/seqpacket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>

namespace brig::sys {

Result<std::pair<Fd, Fd>> seqpacket_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return Error::from_errno(errno, "socketpair(AF_UNIX, SOCK_SEQPACKET)");
  return std::pair<Fd, Fd>{Fd(sv[0]), Fd(sv[1])};
}

namespace {
Result<std::pair<Fd, struct sockaddr_un>> unix_socket(const std::string& path) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Error::make(errc::invalid_argument, "unix socket path empty or too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno(errno, "socket(AF_UNIX)");
  return std::pair<Fd, struct sockaddr_un>{std::move(fd), addr};
}
}  // namespace

Result<Fd> seqpacket_listen(const std::string& path) {
  BRIG_TRY_ASSIGN(sock, unix_socket(path));
  ::unlink(path.c_str());
  mode_t old = ::umask(0177);
  // SAFETY: sockaddr_un is a sockaddr
  int rc = ::bind(sock.first.get(), reinterpret_cast<sockaddr*>(&sock.second), sizeof sock.second);
  ::umask(old);
  if (rc != 0) return Error::from_errno(errno, "bind(" + path + ")");
  if (::listen(sock.first.get(), 4) != 0) return Error::from_errno(errno, "listen(" + path + ")");
  return std::move(sock.first);
}

Result<Fd> seqpacket_connect(const std::string& path, std::chrono::milliseconds timeout) {
  BRIG_TRY_ASSIGN(sock, unix_socket(path));
  // A listener whose backlog is full (its process is stopped or frozen) makes connect() wait
  // for room, for as long as the send timeout says: bounded here.
  struct timeval tv = {static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(sock.first.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  // SAFETY: sockaddr_un is a sockaddr
  if (::connect(sock.first.get(), reinterpret_cast<sockaddr*>(&sock.second), sizeof sock.second) != 0)
    return Error::from_errno(errno == EAGAIN ? ETIMEDOUT : errno, "connect(" + path + ")");
  struct timeval none = {};
  ::setsockopt(sock.first.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  return std::move(sock.first);
}

Result<> send_packet(int sock, std::string_view data, std::span<const int> fds) {
  if (data.size() > kMaxMessageBytes || fds.size() > kMaxMessageFds)
    return Error::make(errc::limit_exceeded, "message too large");
  struct iovec iov = {const_cast<char*>(data.data()), data.size()};
  // A zero-length datagram is indistinguishable from EOF on SEQPACKET; always send one byte.
  char empty = 0;
  if (data.empty()) iov = {&empty, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMessageFds)];
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return ok();
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      // A socket an event loop reads is non-blocking (asio makes it so); a full peer queue
      // waits here as a blocking send would.
      struct pollfd p = {sock, POLLOUT, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return Error::from_errno(errno, "poll(sendmsg)");
      continue;
    }
    return Error::from_errno(errno, "sendmsg");
  }
}

Result<Packet> recv_packet(int sock) {
  // One receive buffer per thread, never cleared: a message costs its own size to copy, not
  // kMaxMessageBytes to zero (and only the pages a message reaches are ever touched).
  thread_local std::unique_ptr<char[]> buffer;
  if (!buffer) buffer.reset(new char[kMaxMessageBytes]);
  Packet packet;
  struct iovec iov = {buffer.get(), kMaxMessageBytes};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMessageFds)];
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Error::from_errno(errno, "recvmsg");
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      packet.fds.emplace_back(fd);
    }
  }
  if (n == 0) return Error::make(errc::not_found, "peer closed");
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
    return Error::make(errc::protocol, "truncated message");
  packet.data.assign(buffer.get(), static_cast<size_t>(n));
  // The one-NUL datagram stands for an empty message (see send_packet); no protobuf message
  // serialises to a single 0x00 byte (field number 0 is invalid).
  if (packet.data.size() == 1 && packet.data[0] == '\0') packet.data.clear();
  return packet;
}

}  // namespace brig::sys
