// brig-port-bench: HTTP throughput and latency to a server in a sandbox through brig's data
// plane, beside the same server on the host reached directly over loopback (bench/ports/run.sh).
// Static, libc only, so the same binary runs on the host and inside any sandbox.
//
//   brig-port-bench serve PORT
//       An HTTP/1.1 server on 0.0.0.0:PORT (a process per connection, keep-alive): GET /bytes/N
//       answers N bytes (Content-Length); POST answers with the number of body bytes it read.
//   brig-port-bench client ADDRESS:PORT HOST get|post BYTES RUNS
//       One kept-alive connection to ADDRESS:PORT with Host: HOST. Each run is one request of
//       BYTES (a download for get, an upload for post), timed from the request's first byte
//       to the response's last. Prints {"ms":[...]} (a failure exits 1 with the reason).
//
// Only sockets, fork and clock_gettime(CLOCK_MONOTONIC).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kBuf = 256 * 1024;
char g_buf[kBuf];

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "brig-port-bench: %s: %s\n", what, strerror(errno));
  exit(1);
}

bool send_all(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads up to the end of a head into `head` (what follows it stays in `extra`).
bool read_head(int fd, std::string& head, std::string& extra) {
  std::string in = std::move(extra);
  extra.clear();
  for (;;) {
    size_t end = in.find("\r\n\r\n");
    if (end != std::string::npos) {
      head = in.substr(0, end + 4);
      extra = in.substr(end + 4);
      return true;
    }
    if (in.size() > 64 * 1024) return false;
    ssize_t r = recv(fd, g_buf, kBuf, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    in.append(g_buf, static_cast<size_t>(r));
  }
}

unsigned long long content_length(const std::string& head) {
  for (const char* name : {"Content-Length:", "content-length:"}) {
    size_t at = head.find(name);
    if (at != std::string::npos) return strtoull(head.c_str() + at + strlen(name), nullptr, 10);
  }
  return 0;
}

// Reads and drops `n` body bytes, `extra` first.
bool drain(int fd, unsigned long long n, std::string& extra) {
  size_t take = std::min<unsigned long long>(n, extra.size());
  extra.erase(0, take);
  n -= take;
  while (n) {
    ssize_t r = recv(fd, g_buf, std::min<unsigned long long>(n, kBuf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void serve_connection(int fd) {
  std::string head, extra;
  while (read_head(fd, head, extra)) {
    char answer[256];
    if (head.starts_with("GET /bytes/")) {
      unsigned long long n = strtoull(head.c_str() + 11, nullptr, 10);
      int len = snprintf(answer, sizeof answer, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
      if (!send_all(fd, answer, static_cast<size_t>(len))) return;
      while (n) {
        size_t chunk = std::min<unsigned long long>(n, kBuf);
        if (!send_all(fd, g_buf, chunk)) return;
        n -= chunk;
      }
    } else if (head.starts_with("POST ")) {
      unsigned long long n = content_length(head);
      if (!drain(fd, n, extra)) return;
      std::string body = std::to_string(n);
      int len = snprintf(answer, sizeof answer, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", body.size(), body.c_str());
      if (!send_all(fd, answer, static_cast<size_t>(len))) return;
    } else {
      const char* nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
      if (!send_all(fd, nf, strlen(nf))) return;
    }
  }
}

int serve(int port) {
  signal(SIGCHLD, SIG_IGN);  // children are reaped by the kernel
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");  // SAFETY: sockaddr_in
  if (listen(l, 128) != 0) die("listen");
  printf("listening\n");
  fflush(stdout);
  for (;;) {
    int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid_t pid = fork();
    if (pid == 0) {
      close(l);
      serve_connection(c);
      _exit(0);
    }
    close(c);
  }
}

int client(const char* target, const char* host, bool upload, unsigned long long bytes, int runs) {
  std::string t(target);
  size_t colon = t.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(atoi(t.c_str() + colon + 1)));
  if (inet_pton(AF_INET, t.substr(0, colon).c_str(), &a.sin_addr) != 1) die("address");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");  // SAFETY: sockaddr_in
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<double> times;
  std::string extra;
  for (int i = 0; i < runs; ++i) {
    char req[512];
    int len = upload ? snprintf(req, sizeof req, "POST /sum HTTP/1.1\r\nHost: %s\r\nContent-Length: %llu\r\n\r\n", host, bytes)
                     : snprintf(req, sizeof req, "GET /bytes/%llu HTTP/1.1\r\nHost: %s\r\n\r\n", bytes, host);
    double t0 = now_ms();
    if (!send_all(fd, req, static_cast<size_t>(len))) die("send request");
    for (unsigned long long left = upload ? bytes : 0; left;) {
      size_t chunk = std::min<unsigned long long>(left, kBuf);
      if (!send_all(fd, g_buf, chunk)) die("send body");
      left -= chunk;
    }
    std::string head;
    if (!read_head(fd, head, extra)) die("read response head");
    if (!head.starts_with("HTTP/1.1 200")) {
      fprintf(stderr, "brig-port-bench: response: %s\n", head.substr(0, head.find('\r')).c_str());
      return 1;
    }
    if (!drain(fd, content_length(head), extra)) die("read response body");
    times.push_back(now_ms() - t0);
  }
  printf("{\"ms\":[");
  for (size_t i = 0; i < times.size(); ++i) printf("%s%.3f", i ? "," : "", times[i]);
  printf("]}\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (size_t i = 0; i < kBuf; ++i) g_buf[i] = static_cast<char>(i);
  if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
  if (argc == 7 && !strcmp(argv[1], "client"))
    return client(argv[2], argv[3], !strcmp(argv[4], "post"), strtoull(argv[5], nullptr, 10), atoi(argv[6]));
  fprintf(stderr, "usage: brig-port-bench serve PORT | client ADDRESS:PORT HOST get|post BYTES RUNS\n");
  return 2;
}
