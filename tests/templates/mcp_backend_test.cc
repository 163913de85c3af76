// The daemon's in-process MCP backend (server/mcp_backend.h) against real sandboxes of the
// cached built-in templates (root; BRIG_TEMPLATE_STATE_DIR, default /var/cache/brig/state).
//
// The daemons here listen but never serve (Daemon::run is not called): any operation that went
// through the daemon's HTTP port instead of the core would hang and fail its bounded wait, so
// every passing test also shows the path is in process.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/util.h"
#include "server/daemon.h"

namespace brig::server {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

struct Env {
  // As brig serve: one loop, shared by the engine (channels, pipes) and the daemon (HTTP),
  // declared first so that it outlives both.
  std::unique_ptr<EventLoop> loop = std::make_unique<EventLoop>();
  std::unique_ptr<sandbox::Engine> engine;
  std::unique_ptr<store::TemplateStore> store;
  std::unique_ptr<core::KeyStore> keys;
  std::string key = "e2b_" + random_hex(20);
};

Env& env() {
  static Env e = [] {
    Env out;
    const char* dir = std::getenv("BRIG_TEMPLATE_STATE_DIR");
    sandbox::EngineOptions engine_options;
    engine_options.state_dir = dir && *dir ? dir : "/var/cache/brig/state";
    engine_options.loop = out.loop.get();
    auto engine = sandbox::Engine::open(engine_options);
    if (!engine) throw std::runtime_error(engine.error().message());
    out.loop->start();
    out.engine = std::move(*engine);
    auto store = store::TemplateStore::open(out.engine->state_dir());
    if (!store) throw std::runtime_error(store.error().message());
    out.store = std::move(*store);
    auto keys = core::KeyStore::open(out.engine->state_dir());
    if (!keys) throw std::runtime_error(keys.error().message());
    out.keys = std::move(*keys);
    out.keys->add_ephemeral(out.key);
    return out;
  }();
  return e;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // SAFETY: sockaddr_in is a sockaddr
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);  // SAFETY: as above
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::unique_ptr<Daemon> start_daemon() {
  DaemonOptions opts;
  opts.http.listen = "127.0.0.1:" + std::to_string(free_port());
  opts.pool_size = 0;
  opts.loop = env().loop.get();
  auto d = Daemon::start(opts, *env().engine, *env().store, *env().keys);
  if (!d) throw std::runtime_error(d.error().message());
  return std::move(*d);
}

#define REQUIRE_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "sandboxes need root"

class InProcessBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() == 0) daemon_ = start_daemon().release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override {
    REQUIRE_ROOT();
    backend_ = std::make_shared<InProcessBackend>(daemon_->mcp_host(), env().key);
  }
  void TearDown() override {
    for (auto& id : created_) (void)daemon_->core().kill(id);
  }
  std::string create(const std::string& tpl, std::map<std::string, std::string> metadata = {}) {
    mcp::NewSandbox req;
    req.template_ref = tpl;
    req.timeout_s = 300;
    req.metadata = std::move(metadata);
    auto c = backend_->create_sandbox(req);
    EXPECT_TRUE(c) << c.error().message();
    if (!c) return "";
    created_.push_back(c->id);
    return c->id;
  }
  struct Run {
    Result<mcp::ExecResult> result = mcp::ExecResult{};
    std::string out, err;
  };
  Run sh(const std::string& id, const std::string& script, mcp::Exec req = {}) {
    req.sandbox_id = id;
    req.cmd = "/bin/bash";
    req.args = {"-c", script};
    Run r;
    r.result = backend_->exec(req, [&](bool is_stderr, std::string_view d) { (is_stderr ? r.err : r.out).append(d); }, nullptr);
    return r;
  }

  static Daemon* daemon_;
  std::shared_ptr<InProcessBackend> backend_;
  std::vector<std::string> created_;
};
Daemon* InProcessBackendTest::daemon_ = nullptr;

TEST_F(InProcessBackendTest, CreateListTimeoutKill) {
  const std::string suite = new_sandbox_id();
  mcp::NewSandbox req;
  req.template_ref = "minimal";
  req.timeout_s = 120;
  req.metadata = {{"suite", suite}};
  auto c = backend_->create_sandbox(req);
  ASSERT_TRUE(c) << c.error().message();
  created_.push_back(c->id);
  EXPECT_EQ(c->template_name, "minimal");
  EXPECT_FALSE(c->ends_at.empty());
  auto rows = backend_->list_sandboxes({{"suite", suite}});
  ASSERT_TRUE(rows) << rows.error().message();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].id, c->id);
  EXPECT_EQ((*rows)[0].state, "running");
  EXPECT_EQ((*rows)[0].metadata.at("suite"), suite);
  EXPECT_GE((*rows)[0].cpu_count, 1u);
  EXPECT_GT((*rows)[0].memory_mb, 0u);
  ASSERT_TRUE((*rows)[0].usage.has_value()) << "a live sandbox has a usage reading";
  EXPECT_GT((*rows)[0].usage->mem_used, 0u);
  EXPECT_TRUE(backend_->set_timeout(c->id, 600));
  auto info = daemon_->core().info(c->id);
  ASSERT_TRUE(info);
  EXPECT_GT(info->end_at_ms, now_unix_ms() + 500'000) << "the timeout was applied";
  ASSERT_TRUE(backend_->kill_sandbox(c->id));
  auto again = backend_->kill_sandbox(c->id);
  ASSERT_FALSE(again);
  EXPECT_TRUE(mcp::is_sandbox_gone(again.error())) << again.error().message();
  auto late = backend_->set_timeout(c->id, 10);
  ASSERT_FALSE(late);
  EXPECT_TRUE(mcp::is_sandbox_gone(late.error()));
  EXPECT_TRUE(backend_->list_sandboxes({{"suite", suite}})->empty());
  auto bad = backend_->create_sandbox({"no-such-template-" + suite, 60, {}, {}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("not found"), std::string::npos) << bad.error().message();
}

TEST_F(InProcessBackendTest, ExecStreamsOutputAndReportsHowItEnded) {
  std::string id = create("minimal");
  ASSERT_FALSE(id.empty());
  int started_pid = 0;
  mcp::Exec req;
  req.on_start = [&](int pid) { started_pid = pid; };
  req.env = {{"X", "y"}};
  auto r = sh(id, "echo out $X; echo err >&2; exit 3", req);
  ASSERT_TRUE(r.result) << r.result.error().message();
  EXPECT_GT(started_pid, 0);
  EXPECT_EQ(r.out, "out y\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_TRUE(r.result->exited);
  EXPECT_EQ(r.result->exit_code, 3);
  EXPECT_EQ(r.result->status, "exit status 3");
  EXPECT_FALSE(r.result->oom_killed);

  mcp::Exec as_root;
  as_root.user = "root";
  as_root.cwd = "/tmp";
  auto who = sh(id, "pwd; id -un", as_root);
  ASSERT_TRUE(who.result);
  EXPECT_EQ(who.out, "/tmp\nroot\n");
  auto dflt = sh(id, "id -un");
  EXPECT_EQ(dflt.out, "user\n") << "no user: the template's";

  mcp::Exec limited;
  limited.timeout_ms = 500;
  auto t0 = std::chrono::steady_clock::now();
  auto slow = sh(id, "sleep 20", limited);
  ASSERT_TRUE(slow.result);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_FALSE(slow.result->exited);
  EXPECT_EQ(slow.result->status, "signal: killed");
  EXPECT_NE(slow.result->error.find("timeout"), std::string::npos) << slow.result->error;

  auto gone = sh("zzzzzzzzzzzzzzzzzzzz", "true");
  ASSERT_FALSE(gone.result);
  EXPECT_TRUE(mcp::is_sandbox_gone(gone.result.error()));
  mcp::Exec bad_user;
  bad_user.user = "nobody";
  EXPECT_FALSE(sh(id, "true", bad_user).result);
}

TEST_F(InProcessBackendTest, ACancelledExecKillsItsProcess) {
  std::string id = create("minimal");
  ASSERT_FALSE(id.empty());
  auto live = daemon_->core().live(id);
  ASSERT_TRUE(live);
  mcp::CancelToken cancel;
  std::promise<int> pid;
  mcp::Exec req;
  req.sandbox_id = id;
  req.cmd = "/bin/sh";
  req.args = {"-c", "sleep 30; echo done"};
  req.on_start = [&](int p) { pid.set_value(p); };
  auto running = std::async(std::launch::async, [&] { return backend_->exec(req, [](bool, std::string_view) {}, &cancel); });
  auto started = pid.get_future();
  ASSERT_EQ(started.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(daemon_->core().running_processes(*live).size(), 1u);
  auto t0 = std::chrono::steady_clock::now();
  cancel.cancel();
  ASSERT_EQ(running.wait_for(5s), std::future_status::ready) << "the cancelled exec returned";
  auto r = running.get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::conflict)) << r.error().message();
  // The process itself is gone (not merely the call): its hub saw it end.
  bool ended = false;
  for (int i = 0; i < 50 && !ended; ++i) {
    ended = daemon_->core().running_processes(*live).empty();
    if (!ended) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(ended) << "the command still runs after the cancel";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  auto ps = sh(id, "for p in /proc/[0-9]*; do tr '\\0' ' ' <$p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 30' || true");
  EXPECT_EQ(ps.out, "0\n");
}

TEST_F(InProcessBackendTest, CellsStreamTheirLinesAndACancelInterruptsTheCell) {
  std::string id = create("base");
  ASSERT_FALSE(id.empty());
  auto cell = [&](const std::string& code, mcp::CancelToken* cancel = nullptr) {
    mcp::Cell c;
    c.sandbox_id = id;
    c.code = code;
    c.language = "python";
    c.timeout_ms = 60'000;
    std::vector<json> lines;
    auto r = backend_->run_cell(c, [&](std::string_view l) { lines.push_back(json::parse(l)); }, cancel);
    return std::make_pair(std::move(r), std::move(lines));
  };
  auto [set, set_lines] = cell("kept = 41\nprint('set')");
  ASSERT_TRUE(set) << set.error().message();
  EXPECT_EQ(set->status, 200);
  ASSERT_FALSE(set_lines.empty());
  EXPECT_EQ(set_lines.back()["type"], "end_of_execution");
  bool printed = false;
  for (auto& l : set_lines) printed |= l["type"] == "stdout" && l["text"] == "set\n";
  EXPECT_TRUE(printed);

  mcp::CancelToken cancel;
  auto long_cell = std::async(std::launch::async, [&] {
    return cell("import time\nfor i in range(300):\n    time.sleep(0.1)\nkept = 0", &cancel).first;
  });
  std::this_thread::sleep_for(1500ms);
  cancel.cancel();
  ASSERT_EQ(long_cell.wait_for(5s), std::future_status::ready);
  auto cancelled = long_cell.get();
  ASSERT_FALSE(cancelled);
  EXPECT_TRUE(cancelled.error().is(errc::conflict));
  // The kernel is free again at once (the cell was interrupted, not left running) and kept
  // its state up to where the cell stopped.
  auto t0 = std::chrono::steady_clock::now();
  auto [next, next_lines] = cell("kept + 1");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_TRUE(next);
  std::string result;
  for (auto& l : next_lines)
    if (l["type"] == "result") result = l.value("text", "");
  EXPECT_EQ(result, "42");

  mcp::Cell refused;
  refused.sandbox_id = id;
  refused.code = "1";
  refused.context_id = "ctx";
  refused.language = "python";  // both: the code interpreter refuses it, as /execute does
  auto r = backend_->run_cell(refused, [](std::string_view) {}, nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->refusal.find("not both"), std::string::npos) << r->refusal;
}

TEST_F(InProcessBackendTest, FilesAndArchivesAsTheTemplatesUser) {
  std::string id = create("minimal");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(backend_->write_file(id, "/home/user/w/deep/f.txt", "line1\nline2\n"));
  auto read = backend_->read_file(id, "/home/user/w/deep/f.txt", 1 << 20);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(*read, "line1\nline2\n");
  auto owner = sh(id, "stat -c %U /home/user/w/deep/f.txt");
  EXPECT_EQ(owner.out, "user\n");
  auto small = backend_->read_file(id, "/home/user/w/deep/f.txt", 5);
  ASSERT_FALSE(small);
  EXPECT_TRUE(small.error().is(errc::limit_exceeded));
  auto missing = backend_->read_file(id, "/home/user/nope", 1 << 20);
  ASSERT_FALSE(missing);
  EXPECT_FALSE(mcp::is_sandbox_gone(missing.error())) << "a missing file is not a missing sandbox";
  EXPECT_FALSE(backend_->read_file(id, "/etc/shadow", 1 << 20)) << "the sandbox user cannot read it";

  ASSERT_EQ(sh(id, "ln -s /etc/shadow /home/user/w/shadow").out, "");
  auto entries = backend_->list_dir(id, "/home/user/w", 2);
  ASSERT_TRUE(entries) << entries.error().message();
  std::map<std::string, mcp::DirEntry> by_path;
  for (auto& e : *entries) by_path[e.path] = e;
  ASSERT_EQ(by_path.size(), 3u);
  EXPECT_EQ(by_path["/home/user/w/deep"].kind, mcp::DirEntry::dir);
  EXPECT_EQ(by_path["/home/user/w/deep/f.txt"].kind, mcp::DirEntry::file);
  EXPECT_EQ(by_path["/home/user/w/deep/f.txt"].size, 12u);
  EXPECT_EQ(by_path["/home/user/w/deep/f.txt"].owner, "user");
  EXPECT_EQ(by_path["/home/user/w/shadow"].kind, mcp::DirEntry::symlink);
  EXPECT_TRUE(by_path["/home/user/w/shadow"].permissions.starts_with("L"));

  auto archive = backend_->download_archive(id, "/home/user/w", "tar.gz", 10 << 20, 10'000, 16 << 20);
  ASSERT_TRUE(archive) << archive.error().message();
  EXPECT_EQ(archive->entries, 4u);  // w, w/deep, w/deep/f.txt, w/shadow
  EXPECT_EQ(archive->bytes, 12u);
  ASSERT_GT(archive->data.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(archive->data[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(archive->data[1]), 0x8b);
  auto tiny = backend_->download_archive(id, "/home/user/w", "tar.gz", 10 << 20, 10'000, 10);
  ASSERT_FALSE(tiny);
  EXPECT_TRUE(tiny.error().is(errc::limit_exceeded));
  auto capped = backend_->download_archive(id, "/home/user/w", "tar.gz", 5, 10'000, 16 << 20);
  ASSERT_FALSE(capped) << "more file content than max_bytes is refused before the first byte";
  auto unpacked = backend_->upload_archive(id, "/home/user/copy", "tar.gz", archive->data);
  ASSERT_TRUE(unpacked) << unpacked.error().message();
  EXPECT_EQ(unpacked->path, "/home/user/copy");
  EXPECT_EQ(unpacked->entries, 4u);
  EXPECT_EQ(*backend_->read_file(id, "/home/user/copy/w/deep/f.txt", 1 << 20), "line1\nline2\n");
  auto garbage = backend_->upload_archive(id, "/home/user/g", "tar.gz", "not an archive");
  ASSERT_FALSE(garbage);
  EXPECT_FALSE(backend_->download_archive(id, "/home/user/no-such", "zip", 1 << 20, 10, 1 << 20));

  const std::string gone = "zzzzzzzzzzzzzzzzzzzz";
  EXPECT_TRUE(mcp::is_sandbox_gone(backend_->read_file(gone, "/x", 10).error()));
  EXPECT_TRUE(mcp::is_sandbox_gone(backend_->write_file(gone, "/x", "x").error()));
  EXPECT_TRUE(mcp::is_sandbox_gone(backend_->list_dir(gone, "/", 1).error()));
}

TEST_F(InProcessBackendTest, ApiCallsGoThroughTheDaemonsRouterWithTheCallersKey) {
  const std::string suite = new_sandbox_id();
  std::string id = create("minimal", {{"suite", suite}});
  ASSERT_FALSE(id.empty());
  auto list = backend_->call_api("GET", "/v2/sandboxes?metadata=suite%3D" + suite, "", 4 << 20);
  ASSERT_TRUE(list) << list.error().message();
  EXPECT_EQ(list->status, 200);
  auto rows = json::parse(list->body);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["sandboxID"], id);
  auto timeout = backend_->call_api("POST", "/sandboxes/" + id + "/timeout", R"({"timeout":500})", 4 << 20);
  ASSERT_TRUE(timeout);
  EXPECT_EQ(timeout->status, 204);
  auto bad = backend_->call_api("POST", "/sandboxes/" + id + "/timeout", R"({"timeout":"x"})", 4 << 20);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << "the REST adapter's own checks apply";
  auto unknown = backend_->call_api("GET", "/no/such/route", "", 4 << 20);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto capped = backend_->call_api("GET", "/v2/sandboxes", "", 10);
  ASSERT_FALSE(capped);
  EXPECT_TRUE(capped.error().is(errc::limit_exceeded));
  auto del = backend_->call_api("DELETE", "/sandboxes/" + id, "", 4 << 20);
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 204);
  EXPECT_FALSE(daemon_->core().live(id));

  // A key the daemon does not know acts for nobody.
  InProcessBackend stranger(daemon_->mcp_host(), "e2b_" + random_hex(20));
  auto refused = stranger.call_api("GET", "/v2/sandboxes", "", 4 << 20);
  ASSERT_FALSE(refused);
  EXPECT_FALSE(stranger.list_sandboxes({}));
  EXPECT_FALSE(stranger.create_sandbox({"minimal", 60, {}, {}}));
}

TEST(InProcessBackendClose, StreamsEndAndNewCallsAreRefusedWhenTheDaemonStops) {
  REQUIRE_ROOT();
  auto daemon = start_daemon();
  auto backend = std::make_shared<InProcessBackend>(daemon->mcp_host(), env().key);
  auto created = backend->create_sandbox({"minimal", 120, {}, {}});
  ASSERT_TRUE(created) << created.error().message();
  std::promise<void> started;
  mcp::Exec req;
  req.sandbox_id = created->id;
  req.cmd = "sleep";
  req.args = {"30"};
  req.on_start = [&](int) { started.set_value(); };
  auto running = std::async(std::launch::async, [&] { return backend->exec(req, [](bool, std::string_view) {}, nullptr); });
  ASSERT_EQ(started.get_future().wait_for(10s), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  daemon->stop();
  ASSERT_EQ(running.wait_for(5s), std::future_status::ready);
  auto r = running.get();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("stopping"), std::string::npos) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  auto late = backend->list_sandboxes({});
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message().find("stopping"), std::string::npos);
  (void)daemon->core().kill(created->id);
  daemon.reset();
  // The backend outlives the daemon (code mode's background work holds one): still refused.
  EXPECT_FALSE(backend->kill_sandbox(created->id));
}

}  // namespace
}  // namespace brig::server
