// brig-channel-bench: a round trip on a sandbox's control channel (stat "/"), and a process
// from spawn to its pushed exit, with the channel read by the waiting caller (brig run's way)
// beside the same read by the event loop (the daemon's way). Same process, rounds alternate.
//   brig-channel-bench --rootfs DIR [--iterations 2000]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "sandbox/engine.h"

namespace {
namespace sb = brig::sandbox;
using Clock = std::chrono::steady_clock;
double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}
struct Subject {
  std::string label;
  std::unique_ptr<brig::EventLoop> loop;
  std::string dir;
  std::unique_ptr<sb::Engine> engine;
  std::shared_ptr<sb::Sandbox> sandbox;
  std::vector<double> call, exit;
};
}  // namespace

int main(int argc, char** argv) {
  sb::run_zygote_if_requested(argc, argv);
  std::string rootfs;
  int iterations = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--rootfs") rootfs = argv[i + 1];
    else if (a == "--iterations") iterations = std::max(10, atoi(argv[i + 1]));
  }
  if (rootfs.empty()) {
    fprintf(stderr, "usage: brig-channel-bench --rootfs DIR [--iterations N]\n");
    return 2;
  }
  Subject subjects[2];
  subjects[0].label = "read by the waiting caller";
  subjects[1].label = "read by the event loop";
  subjects[1].loop = std::make_unique<brig::EventLoop>();
  for (auto& s : subjects) {
    char tmpl[] = "/var/tmp/brig-channel-bench-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    s.dir = tmpl;
    sb::EngineOptions o;
    o.state_dir = s.dir;
    o.loop = s.loop.get();
    auto e = sb::Engine::open(o);
    if (!e) {
      fprintf(stderr, "Engine::open: %s\n", e.error().message().c_str());
      return 1;
    }
    s.engine = std::move(*e);
  }
  subjects[1].loop->start();
  sb::SandboxSpec spec;
  spec.rootfs = std::filesystem::absolute(rootfs).string();
  for (auto& s : subjects) {
    auto c = s.engine->create(spec);
    if (!c) {
      fprintf(stderr, "create: %s\n", c.error().message().c_str());
      return 1;
    }
    s.sandbox = *c;
  }
  sb::ProcessSpec p;
  p.cmd = "/bin/true";
  for (int i = 0; i < iterations; ++i) {
    for (auto& s : subjects) {
      auto t0 = Clock::now();
      if (!s.sandbox->stat("/", sb::User::user)) return 1;
      s.call.push_back(us_since(t0));
    }
    if (i % 10) continue;
    for (auto& s : subjects) {
      auto t0 = Clock::now();
      auto proc = s.sandbox->spawn(p);
      if (!proc) return 1;
      if (s.loop) {
        std::promise<void> done;
        auto f = done.get_future();
        (void)s.sandbox->on_exit(proc->pid, [&](std::optional<sb::ExitStatus>) { done.set_value(); });
        f.wait();
      } else {
        for (;;) {
          auto ex = s.sandbox->wait_exit(proc->pid, std::chrono::seconds(10));
          if (!ex) return 1;
          if (*ex) break;
        }
      }
      s.exit.push_back(us_since(t0));
    }
  }
  double load[3] = {0, 0, 0};
  (void)getloadavg(load, 3);
  printf("load average %.2f; %d round trips, %d processes each\n\n", load[0], iterations, iterations / 10);
  printf("| channel | stat(\"/\") round trip p50 / p95 µs | spawn(/bin/true) → exit known p50 / p95 µs |\n|---|---:|---:|\n");
  for (auto& s : subjects)
    printf("| %s | %.0f / %.0f | %.0f / %.0f |\n", s.label.c_str(), percentile(s.call, 50), percentile(s.call, 95),
           percentile(s.exit, 50), percentile(s.exit, 95));
  for (auto& s : subjects) {
    s.sandbox.reset();
    s.engine.reset();
    std::error_code ec;
    std::filesystem::remove_all(s.dir, ec);
  }
  return 0;
}
