// brig-http-bench: what 1,000 idle keep-alive connections cost a running `brig serve`, and how
// fast it answers /health while it holds them; with --baseline, the same for another brig
// binary (an older build: the peer), in the same run, interleaved round by round.
//
// Per round and per daemon, each round on freshly started daemons (so memory freed in an earlier
// round cannot hide the cost):
//   1. /health latency on one keep-alive connection, nothing else open ("unloaded");
//   2. the daemon's VmRSS and thread count;
//   3. N connections opened, each served one GET /health and left open (idle keep-alive);
//   4. VmRSS and threads again, after a 300 ms settle: (after - before) / N per connection;
//   5. /health latency while they are held: on a fresh connection each time (connect, request,
//      answer, close), and on one of the held connections, a different one each time;
//   6. every connection closed.
// Latencies are pooled over the rounds (p50, p95 nearest rank); memory is the median over rounds.
// Only sockets, poll, fork/exec and clock_gettime; every wait is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

double now_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "brig-http-bench: %s\n", what.c_str());
  std::exit(1);
}

double percentile(std::vector<double> v, double p) {  // nearest rank
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::max(1.0, std::ceil(p / 100.0 * static_cast<double>(v.size()))));
  return v[std::min(rank, v.size()) - 1];
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind: " + std::string(std::strerror(errno)));
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

constexpr int kTimeoutMs = 10'000;

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

const std::string kHealth = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// Reads one response with a Content-Length body; its status, or 0.
int read_response(int fd) {
  std::string buf;
  size_t need = std::string::npos;
  char tmp[4096];
  while (buf.size() < need) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, kTimeoutMs) <= 0) return 0;
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return 0;
    buf.append(tmp, static_cast<size_t>(n));
    if (need == std::string::npos) {
      auto end = buf.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (buf.size() > 65536) return 0;
        continue;
      }
      std::string head = buf.substr(0, end);
      for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto cl = head.find("content-length:");
      need = end + 4 + (cl == std::string::npos ? 0 : std::strtoul(head.c_str() + cl + 15, nullptr, 10));
    }
  }
  return buf.size() > 12 ? std::atoi(buf.c_str() + 9) : 0;
}

struct ProcStatus {
  double rss_kib = 0;
  int threads = 0;
};
ProcStatus proc_status(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  ProcStatus s;
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) s.rss_kib = std::atof(line.c_str() + 6);
    if (line.starts_with("Threads:")) s.threads = std::atoi(line.c_str() + 8);
  }
  return s;
}

struct Daemon {
  Daemon(std::string l, std::string b) : label(std::move(l)), bin(std::move(b)) {}
  std::string label, bin;
  fs::path state;
  pid_t pid = -1;
  int port = 0;
  // Samples.
  std::vector<double> unloaded_us, fresh_us, held_us;
  std::vector<double> rss_before_kib, rss_held_kib, per_conn_kib;
  std::vector<int> threads_before, threads_held;
};

void start(Daemon& d) {
  char tmpl[] = "/tmp/brig-http-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) die("mkdtemp");
  d.state = tmpl;
  d.port = free_port();
  std::string listen = "127.0.0.1:" + std::to_string(d.port);
  std::string log = (d.state / "serve.log").string();
  d.pid = ::fork();
  if (d.pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::string state = d.state.string();
    // --pool 0: no sandboxes, nothing but the HTTP layer and the control plane's /health.
    const char* argv[] = {d.bin.c_str(), "--state-dir", state.c_str(), "serve", "--listen", listen.c_str(), "--pool", "0", nullptr};
    ::execv(d.bin.c_str(), const_cast<char* const*>(argv));
    std::_Exit(127);
  }
  for (int i = 0; i < 200; ++i) {  // 20 s at most
    int fd = connect_to(d.port);
    if (fd >= 0) {
      bool ok = send_all(fd, kHealth) && read_response(fd) == 200;
      ::close(fd);
      if (ok) return;
    }
    int st;
    if (::waitpid(d.pid, &st, WNOHANG) == d.pid) die(d.label + ": brig serve exited; see " + log);
    ::usleep(100'000);
  }
  die(d.label + ": brig serve did not answer /health; see " + log);
}

void stop(Daemon& d) {
  if (d.pid <= 0) return;
  ::kill(d.pid, SIGTERM);
  for (int i = 0; i < 200; ++i) {  // 20 s, then SIGKILL
    int st;
    if (::waitpid(d.pid, &st, WNOHANG) == d.pid) {
      d.pid = -1;
      break;
    }
    ::usleep(100'000);
  }
  if (d.pid > 0) {
    ::kill(d.pid, SIGKILL);
    ::waitpid(d.pid, nullptr, 0);
    d.pid = -1;
  }
  std::error_code ec;
  fs::remove_all(d.state, ec);
}

double health_on(int fd) {
  double t0 = now_us();
  if (!send_all(fd, kHealth) || read_response(fd) != 200) die("a /health request failed");
  return now_us() - t0;
}

void round(Daemon& d, int conns, int requests) {
  {  // unloaded: one keep-alive connection
    int fd = connect_to(d.port);
    if (fd < 0) die("connect");
    health_on(fd);  // warm
    for (int i = 0; i < requests; ++i) d.unloaded_us.push_back(health_on(fd));
    ::close(fd);
  }
  ::usleep(300'000);
  ProcStatus before = proc_status(d.pid);
  std::vector<int> held;
  held.reserve(static_cast<size_t>(conns));
  for (int opened = 0; opened < conns;) {
    // In batches, each one served once, so the listen backlog never overflows.
    int batch = std::min(100, conns - opened);
    size_t first = held.size();
    for (int i = 0; i < batch; ++i) {
      int fd = connect_to(d.port);
      if (fd < 0) die(d.label + ": connect " + std::to_string(opened + i) + ": " + std::strerror(errno));
      if (!send_all(fd, kHealth)) die("send");
      held.push_back(fd);
    }
    for (size_t i = first; i < held.size(); ++i)
      if (read_response(held[i]) != 200) die(d.label + ": connection " + std::to_string(i) + " was not served");
    opened += batch;
  }
  ::usleep(300'000);
  ProcStatus with = proc_status(d.pid);
  d.rss_before_kib.push_back(before.rss_kib);
  d.rss_held_kib.push_back(with.rss_kib);
  d.per_conn_kib.push_back((with.rss_kib - before.rss_kib) / conns);
  d.threads_before.push_back(before.threads);
  d.threads_held.push_back(with.threads);
  for (int i = 0; i < requests; ++i) {
    double t0 = now_us();
    int fd = connect_to(d.port);
    if (fd < 0) die("connect");
    if (!send_all(fd, kHealth) || read_response(fd) != 200) die("a /health request on a new connection failed");
    d.fresh_us.push_back(now_us() - t0);
    ::close(fd);
  }
  for (int i = 0; i < requests; ++i) d.held_us.push_back(health_on(held[(static_cast<size_t>(i) * 7919) % held.size()]));
  for (int fd : held) ::close(fd);
  ::usleep(500'000);  // let the daemon notice the closes
}

template <class T>
double median(std::vector<T> v) {
  std::vector<double> d(v.begin(), v.end());
  return percentile(d, 50);
}

std::string sh(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, f)) out += buf;
    ::pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Daemon> daemons;
  int conns = 1000, rounds = 5, requests = 200;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--brig") daemons.insert(daemons.begin(), Daemon("brig (this build)", next()));
    else if (a == "--baseline") daemons.push_back(Daemon("brig (baseline)", next()));
    else if (a == "--baseline-label") { if (daemons.size() > 1) daemons.back().label = next(); else die("--baseline first"); }
    else if (a == "--connections") conns = std::atoi(next().c_str());
    else if (a == "--rounds") rounds = std::atoi(next().c_str());
    else if (a == "--requests") requests = std::atoi(next().c_str());
    else die("usage: brig-http-bench --brig BIN [--baseline BIN [--baseline-label TEXT]] [--connections N] [--rounds N] [--requests N]");
  }
  if (daemons.empty() || daemons.front().label != "brig (this build)") die("--brig BIN is required");
  if (conns < 1 || rounds < 1 || requests < 1) die("counts must be positive");
  // This process holds every client end.
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(conns) + 1024);
  ::setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(conns) + 64) die("RLIMIT_NOFILE too low for " + std::to_string(conns) + " connections");

  utsname u{};
  ::uname(&u);
  std::printf("## HTTP: %d idle keep-alive connections (brig-http-bench)\n\n", conns);
  std::printf("- date: %s; machine: %s %s, %ld cores, %s\n", sh("date -u '+%Y-%m-%d %H:%M UTC'").c_str(), u.sysname,
              u.release, ::sysconf(_SC_NPROCESSORS_ONLN),
              sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'").c_str());
  std::printf("- load average before: %s\n", sh("cut -d' ' -f1-3 /proc/loadavg").c_str());
  std::printf("- %d rounds, interleaved; per round and daemon: %d /health requests unloaded, %d on new connections and "
              "%d on held ones while %d are open\n", rounds, requests, requests, requests, conns);
  for (auto& d : daemons) std::printf("- %s: %s\n", d.label.c_str(), d.bin.c_str());
  std::fflush(stdout);

  for (int r = 0; r < rounds; ++r) {
    for (auto& d : daemons) start(d);
    for (size_t k = 0; k < daemons.size(); ++k) round(daemons[(k + static_cast<size_t>(r)) % daemons.size()], conns, requests);
    for (auto& d : daemons) stop(d);
  }

  std::printf("\n| daemon | RSS before | RSS with %d idle | per connection | threads before → with %d idle |\n",
              conns, conns);
  std::printf("|---|---:|---:|---:|---:|\n");
  for (auto& d : daemons)
    std::printf("| %s | %.1f MB | %.1f MB | %.1f KiB | %.0f → %.0f |\n", d.label.c_str(),
                median(d.rss_before_kib) / 1024, median(d.rss_held_kib) / 1024, median(d.per_conn_kib),
                median(d.threads_before), median(d.threads_held));
  std::printf("\n| daemon | /health unloaded p50 / p95 | new connection, %d held, p50 / p95 | on a held connection p50 / p95 |\n", conns);
  std::printf("|---|---:|---:|---:|\n");
  for (auto& d : daemons)
    std::printf("| %s | %.0f / %.0f µs | %.0f / %.0f µs | %.0f / %.0f µs |\n", d.label.c_str(),
                percentile(d.unloaded_us, 50), percentile(d.unloaded_us, 95), percentile(d.fresh_us, 50),
                percentile(d.fresh_us, 95), percentile(d.held_us, 50), percentile(d.held_us, 95));
  std::printf("\nMemory: medians over %d rounds, each on freshly started daemons (VmRSS of the brig serve process; "
              "kernel socket buffers are not in it). Latency: nearest-rank percentiles over all rounds' samples.\n", rounds);
  std::printf("- load average after: %s\n", sh("cut -d' ' -f1-3 /proc/loadavg").c_str());
  return 0;
}
