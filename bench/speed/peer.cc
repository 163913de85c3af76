// brig-speed-peer: the machine's own limits, measured beside brig in the same run (bench/speed).
//
//   brig-speed-peer pipe BYTES
//       A plain pipe between two processes: a writer fork()ed from this one write()s BYTES in
//       64 KiB pieces (the default pipe size), this process read()s them into a 64 KiB buffer.
//       Prints {"bytes":N,"ms":T}, T from before the fork to the writer's exit and EOF.
//   brig-speed-peer time ITERATIONS WARMUP --cmd NAME ARGV... [--cmd NAME ARGV...]...
//       Runs each command once per iteration, round-robin with a rotating start (a noisy machine
//       slows all alike); a sample is fork -> exit (waited through a pidfd), stdin /dev/null,
//       stdout and stderr drained. A run that does not exit 0 is a failure, not a sample.
//       Leading VAR=VALUE words of an ARGV are set in that command's environment (as env(1)
//       would, without exec'ing env).
//       Prints {"NAME":{"ms":[...],"failures":F,"last_error":"..."},...}.
//
// Only fork/exec, pipes, poll and clock_gettime(CLOCK_MONOTONIC); no shell.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
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

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "brig-speed-peer: %s: %s\n", what, strerror(errno));
  exit(1);
}

int pipe_bench(unsigned long long bytes) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) die("pipe2");
  static char buf[65536];
  memset(buf, 'a', sizeof buf);
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(p[0]);
    unsigned long long left = bytes;
    while (left) {
      size_t want = left < sizeof buf ? static_cast<size_t>(left) : sizeof buf;
      ssize_t n = write(p[1], buf, want);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(1);
      left -= static_cast<unsigned long long>(n);
    }
    _exit(0);
  }
  close(p[1]);
  unsigned long long got = 0;
  for (;;) {
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read");
    if (n == 0) break;
    got += static_cast<unsigned long long>(n);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  double ms = now_ms() - t0;
  close(p[0]);
  if (got != bytes || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "brig-speed-peer: pipe moved %llu of %llu bytes\n", got, bytes);
    return 1;
  }
  printf("{\"bytes\":%llu,\"ms\":%.3f}\n", bytes, ms);
  return 0;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o;
}

// One run of argv: fork -> exit in ms, or -1 with `error` set.
double time_once(const std::vector<std::string>& argv, std::string& error) {
  std::vector<char*> cargv, assignments;
  for (auto& a : argv) {
    if (cargv.empty() && a.find('=') != std::string::npos && a.find('/') > a.find('='))
      assignments.push_back(const_cast<char*>(a.c_str()));
    else
      cargv.push_back(const_cast<char*>(a.c_str()));
  }
  if (cargv.empty()) return error = "no command", -1;
  cargv.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) die("pipe2");
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    for (char* kv : assignments) putenv(kv);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  close(out[1]);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  std::string output;
  bool open_out = true, exited = false;
  double deadline = t0 + 60'000;
  char buf[4096];
  while (!exited) {
    pollfd fds[2];
    int n = 0;
    if (open_out) fds[n++] = {out[0], POLLIN, 0};
    if (pidfd >= 0) fds[n++] = {pidfd, POLLIN, 0};
    if (n == 0) break;
    int left = static_cast<int>(deadline - now_ms());
    if (left <= 0) {
      kill(pid, SIGKILL);
      error = "timed out after 60 s";
      break;
    }
    int rc = poll(fds, static_cast<nfds_t>(n), left);
    if (rc < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == pidfd) {
        exited = true;
      } else {
        ssize_t k = read(out[0], buf, sizeof buf);
        if (k > 0 && output.size() < 4096) output.append(buf, static_cast<size_t>(k));
        else if (k == 0 || (k < 0 && errno != EINTR)) open_out = false;
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  double ms = now_ms() - t0;
  if (pidfd >= 0) close(pidfd);
  close(out[0]);
  if (!error.empty()) return -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
            (output.empty() ? "" : ": " + output.substr(0, output.find('\n')));
    return -1;
  }
  return ms;
}

struct Command {
  std::string name;
  std::vector<std::string> argv;
  std::vector<double> samples;
  int failures = 0;
  std::string last_error;
};

int time_bench(int iterations, int warmup, std::vector<Command>& cmds) {
  for (int it = 0; it < warmup + iterations; ++it) {
    for (size_t k = 0; k < cmds.size(); ++k) {
      Command& c = cmds[(static_cast<size_t>(it) + k) % cmds.size()];
      std::string error;
      double ms = time_once(c.argv, error);
      if (it < warmup) continue;
      if (ms < 0) c.failures++, c.last_error = error;
      else c.samples.push_back(ms);
    }
  }
  printf("{");
  for (size_t i = 0; i < cmds.size(); ++i) {
    printf("%s\"%s\":{\"ms\":[", i ? "," : "", json_escape(cmds[i].name).c_str());
    for (size_t j = 0; j < cmds[i].samples.size(); ++j) printf("%s%.3f", j ? "," : "", cmds[i].samples[j]);
    printf("],\"failures\":%d,\"last_error\":\"%s\"}", cmds[i].failures, json_escape(cmds[i].last_error).c_str());
  }
  printf("}\n");
  return 0;
}

[[noreturn]] void usage() {
  fprintf(stderr,
          "usage: brig-speed-peer pipe BYTES\n"
          "       brig-speed-peer time ITERATIONS WARMUP --cmd NAME ARGV... [--cmd NAME ARGV...]...\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) usage();
  std::string mode = argv[1];
  if (mode == "pipe" && argc == 3) {
    char* end = nullptr;
    unsigned long long bytes = strtoull(argv[2], &end, 10);
    if (!end || *end || bytes == 0 || bytes > (64ull << 30)) usage();
    return pipe_bench(bytes);
  }
  if (mode == "time" && argc >= 6) {
    int iterations = atoi(argv[2]), warmup = atoi(argv[3]);
    if (iterations < 1 || iterations > 100000 || warmup < 0 || warmup > 100000) usage();
    std::vector<Command> cmds;
    for (int i = 4; i < argc; ++i) {
      if (std::string(argv[i]) == "--cmd") {
        if (i + 1 >= argc) usage();
        cmds.push_back({argv[++i], {}, {}, 0, {}});
      } else {
        if (cmds.empty()) usage();
        cmds.back().argv.push_back(argv[i]);
      }
    }
    for (auto& c : cmds)
      if (c.argv.empty()) usage();
    return time_bench(iterations, warmup, cmds);
  }
  usage();
}
