// brig-create-bench: cold sandbox creates, one at a time and several at once, with the
// zygote's creates allowed to overlap (EngineOptions::max_parallel_creates = 8, the default)
// beside the same engine told to run them one at a time (max_parallel_creates = 1: how every
// create ran before they could overlap). Both engines live in this process, each with its own
// state dir and zygote; rounds alternate between them so machine noise hits both alike.
//
// Per round and engine:
//   - one create: Engine::create(spec) → returned, alone;
//   - N at once: N threads released together (a latch), each create's own latency, and the
//     wall time from the release to the last create returned.
// Sandboxes are killed after their round, untimed. No warm pool: every create is cold. The
// zygote's own timing of each create (SandboxHandle::create_trace: its helper began → the init
// was ready) gives the most creates that were inside the zygote at one instant.
//
// With --network every sandbox gets its own network (a veth pair, the host firewall, the default
// egress policy), as the daemon's sandboxes do; without it, loopback only.
//
//   brig-create-bench --rootfs DIR [--iterations 50] [--warmup 3] [--concurrency 4] [--network]
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/backend.h"
#include "sandbox/engine.h"

namespace {

namespace sb = brig::sandbox;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {  // nearest rank
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

struct Options {
  std::string rootfs;
  int iterations = 50;
  int warmup = 3;
  int concurrency = 4;
  bool network = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--rootfs") o.rootfs = value();
    else if (a == "--iterations") o.iterations = std::max(1, atoi(value().c_str()));
    else if (a == "--warmup") o.warmup = std::max(0, atoi(value().c_str()));
    else if (a == "--concurrency") o.concurrency = std::clamp(atoi(value().c_str()), 2, 32);
    else if (a == "--network") o.network = true;
    else {
      fprintf(stderr,
              "usage: brig-create-bench --rootfs DIR [--iterations N] [--warmup N] [--concurrency N] [--network]\n");
      exit(a == "--help" ? 0 : 2);
    }
  }
  if (o.rootfs.empty()) {
    fprintf(stderr, "brig-create-bench: --rootfs DIR is required (scripts/build-test-rootfs.sh prints one)\n");
    exit(2);
  }
  return o;
}

struct Subject {
  std::string label;
  size_t max_parallel;
  std::string state_dir;
  std::unique_ptr<sb::Engine> engine;
  std::vector<double> single, each, wall;
  std::vector<int> in_flight;  // most creates inside the zygote at once, per concurrent round
  int failures = 0;
  std::string last_failure;
};

int most_at_once(const std::vector<sb::SandboxHandle::CreateTrace>& traces) {
  int most = 0;
  for (auto& t : traces) {
    int at = 0;
    for (auto& u : traces) at += u.began_ns <= t.began_ns && t.began_ns < u.ready_ns;
    most = std::max(most, at);
  }
  return most;
}

// One create, timed; the sandbox is killed untimed.
void one(Subject& s, const sb::SandboxSpec& spec, bool record) {
  auto t0 = Clock::now();
  auto r = s.engine->create(spec);
  double ms = ms_since(t0);
  if (!r) {
    ++s.failures;
    s.last_failure = r.error().message();
    return;
  }
  if (record) s.single.push_back(ms);
  (void)s.engine->kill((*r)->id());
}

void batch(Subject& s, const sb::SandboxSpec& spec, int n, bool record) {
  std::vector<std::shared_ptr<sb::Sandbox>> made(static_cast<size_t>(n));
  std::vector<double> took(static_cast<size_t>(n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::latch go(n + 1);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      auto t0 = Clock::now();
      auto r = s.engine->create(spec);
      took[static_cast<size_t>(i)] = ms_since(t0);
      if (r) made[static_cast<size_t>(i)] = *r;
      else errors[static_cast<size_t>(i)] = r.error().message();
    });
  auto t0 = Clock::now();
  go.arrive_and_wait();
  for (auto& t : threads) t.join();
  double wall = ms_since(t0);
  std::vector<sb::SandboxHandle::CreateTrace> traces;
  bool all = true;
  for (size_t i = 0; i < made.size(); ++i) {
    if (!made[i]) {
      all = false;
      ++s.failures;
      s.last_failure = errors[i];
      continue;
    }
    if (auto* h = dynamic_cast<sb::SandboxHandle*>(made[i].get())) traces.push_back(h->create_trace());
    if (record) s.each.push_back(took[i]);
  }
  if (record && all) {
    s.wall.push_back(wall);
    s.in_flight.push_back(most_at_once(traces));
  }
  for (auto& m : made)
    if (m) (void)s.engine->kill(m->id());
}

std::string fmt(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, v < 10 ? "%.2f" : "%.1f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  sb::run_zygote_if_requested(argc, argv);
  Options opt = parse(argc, argv);
  if (geteuid() != 0) {
    fprintf(stderr, "brig-create-bench: needs root (the Linux backend does)\n");
    return 2;
  }
  opt.rootfs = std::filesystem::absolute(opt.rootfs).string();
  sb::SandboxSpec spec;
  spec.rootfs = opt.rootfs;
  spec.template_name = "bench";
  if (opt.network) spec.egress = sb::EgressPolicy{};

  std::vector<Subject> subjects;
  subjects.push_back({"one at a time (max_parallel_creates 1)", 1, "", nullptr, {}, {}, {}, {}, 0, {}});
  subjects.push_back({"side by side (max_parallel_creates 8)", 8, "", nullptr, {}, {}, {}, {}, 0, {}});
  // Both zygotes are forked before any thread starts.
  for (auto& s : subjects) {
    char tmpl[] = "/var/tmp/brig-create-bench-XXXXXX";
    if (!mkdtemp(tmpl)) {
      perror("mkdtemp");
      return 1;
    }
    s.state_dir = tmpl;
    sb::EngineOptions options;
    options.state_dir = s.state_dir;
    options.max_parallel_creates = s.max_parallel;
    auto e = sb::Engine::open(options);
    if (!e) {
      fprintf(stderr, "Engine::open: %s\n", e.error().message().c_str());
      return 1;
    }
    s.engine = std::move(*e);
  }

  const int n = opt.concurrency;
  for (int round = 0; round < opt.warmup + opt.iterations; ++round) {
    const bool record = round >= opt.warmup;
    // Alternate which engine goes first, so neither always follows the other's teardown.
    for (size_t k = 0; k < subjects.size(); ++k) one(subjects[(k + static_cast<size_t>(round)) % 2], spec, record);
    for (size_t k = 0; k < subjects.size(); ++k) batch(subjects[(k + static_cast<size_t>(round)) % 2], spec, n, record);
  }

  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = NAN;
  printf("## Cold creates, one and %d at once (brig-create-bench)\n\n", n);
  printf("%u CPUs online, load average %.2f during the run; rootfs %s; %d rounds + %d warm-up; every create cold "
         "(no pool), the sandbox killed after its round; %s.\n\n",
         std::thread::hardware_concurrency(), load[0], opt.rootfs.c_str(), opt.iterations, opt.warmup,
         opt.network ? "each with its own network (veth pair, firewall, default policy)" : "loopback only");
  printf("| creates in the zygote | scenario | n | p50 ms | p95 ms |\n|---|---|---:|---:|---:|\n");
  auto row = [](const Subject& s, const std::string& scenario, const std::vector<double>& v) {
    printf("| %s | %s | %zu | %s | %s |\n", s.label.c_str(), scenario.c_str(), v.size(), fmt(percentile(v, 50)).c_str(),
           fmt(percentile(v, 95)).c_str());
  };
  for (auto& s : subjects) row(s, "1 create alone: create() → returned", s.single);
  for (auto& s : subjects) row(s, std::to_string(n) + " at once: each create() → returned", s.each);
  for (auto& s : subjects) row(s, std::to_string(n) + " at once: all returned (wall)", s.wall);
  printf("\n");
  for (auto& s : subjects) {
    std::vector<double> f(s.in_flight.begin(), s.in_flight.end());
    printf("%s: most creates inside the zygote at once, per %d-create round: p50 %s, max %s\n", s.label.c_str(), n,
           fmt(percentile(f, 50)).c_str(), fmt(percentile(f, 100)).c_str());
  }
  if (subjects[0].wall.size() && subjects[1].wall.size())
    printf("\n%d creates at once, wall p50: %.2f× of one at a time\n", n,
           percentile(subjects[1].wall, 50) / percentile(subjects[0].wall, 50));
  for (auto& s : subjects)
    if (s.failures) printf("failures: %s: %d (last: %s)\n", s.label.c_str(), s.failures, s.last_failure.c_str());
  fflush(stdout);

  for (auto& s : subjects) {
    s.engine.reset();
    std::error_code ec;
    std::filesystem::remove_all(s.state_dir, ec);
  }
  return 0;
}
