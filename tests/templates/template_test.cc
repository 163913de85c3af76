// Templates end to end (root, Debian archive reachable): caching, extension, failures, COPY,
// and every built-in running its language. Layers are cached in BRIG_TEMPLATE_STATE_DIR
// (default /var/cache/brig/state), so only the first run pays for mmdebstrap and apt.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "base/util.h"
#include "fixtures/sandbox_fixture.h"
#include "store/builtin.h"

namespace brig::testing {
namespace {

namespace fs = std::filesystem;
using sandbox::User;

struct Recorder final : store::BuildProgress {
  std::vector<bool> cached;  // per step, in order
  std::string output;
  void step_started(int, int, const std::string&) override {}
  void step_output(std::string_view d) override { output.append(d); }
  void step_finished(int, int, bool was_cached, double) override { cached.push_back(was_cached); }
};

struct Env {
  std::unique_ptr<sandbox::Engine> engine;
  std::unique_ptr<store::TemplateStore> store;
};

Env& env() {
  static Env e = [] {
    Env out;
    const char* dir = std::getenv("BRIG_TEMPLATE_STATE_DIR");
    auto engine = sandbox::Engine::open({dir && *dir ? dir : "/var/cache/brig/state"});
    if (!engine) throw std::runtime_error(engine.error().message());
    out.engine = std::move(*engine);
    auto store = store::TemplateStore::open(out.engine->state_dir());
    if (!store) throw std::runtime_error(store.error().message());
    out.store = std::move(*store);
    return out;
  }();
  return e;
}

#define REQUIRE_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "template builds need root"

Result<store::TemplateInfo> build(const std::string& name, const std::string& dockerfile, Recorder& rec,
                                  const std::string& context = "") {
  store::BuildRequest req;
  req.definition = dockerfile;
  req.definition_name = name + ".Dockerfile";
  req.context_dir = context;
  req.name = name;
  req.resolve_parent = [&](const std::string& p) { return store::resolve_template(*env().engine, *env().store, p, rec); };
  return store::build_template(*env().engine, *env().store, req, rec);
}

// Runs `script` in a sandbox of template `t`, with the template's user and workdir.
sandbox::RunResult run_in(const store::TemplateInfo& t, const std::string& script) {
  sandbox::SandboxSpec spec;
  spec.layers = env().store->layer_paths(t);
  spec.template_name = t.name;
  spec.env = t.config.env;
  spec.lifetime = std::chrono::seconds(60);
  auto sb = env().engine->create(spec);
  EXPECT_TRUE(sb) << (sb ? "" : sb.error().message());
  if (!sb) return {};
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c", script};
  ps.user = t.config.user == "root" ? User::root : User::user;
  ps.cwd = t.config.workdir;
  auto r = (*sb)->run(ps, {});
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  (void)env().engine->kill((*sb)->id());
  return r ? *r : sandbox::RunResult{};
}

std::set<std::string> build_dirs() {
  std::set<std::string> out;
  for (auto& e : fs::directory_iterator(env().engine->state_dir() + "/layers"))
    if (e.path().filename().string().starts_with(".build-")) out.insert(e.path().filename());
  return out;
}

TEST(Templates, CachedRebuildIsANoOpAndAChangedRunInvalidatesOnlyWhatFollows) {
  REQUIRE_ROOT();
  // The parent is resolved (built if this cache has never seen it) outside the recorded build,
  // so the assertions below hold on an empty cache as on a warm one.
  Recorder parent;
  auto base = store::resolve_template(*env().engine, *env().store, "base", parent);
  ASSERT_TRUE(base) << base.error().message();
  const std::string nonce = new_sandbox_id();
  const std::string first = "FROM base\nRUN echo " + nonce + " > /one\nRUN echo two > /two\n";
  Recorder r1;
  auto t1 = build("t-cache", first, r1);
  ASSERT_TRUE(t1) << t1.error().message();
  EXPECT_EQ(r1.cached, (std::vector<bool>{true, false, false}));
  Recorder r2;
  auto t2 = build("t-cache", first, r2);
  ASSERT_TRUE(t2);
  EXPECT_EQ(r2.cached, (std::vector<bool>{true, true, true}));
  EXPECT_EQ(t2->id, t1->id);
  Recorder r3;
  auto t3 = build("t-cache", "FROM base\nRUN echo " + nonce + " > /one\nRUN echo changed > /two\n", r3);
  ASSERT_TRUE(t3);
  EXPECT_EQ(r3.cached, (std::vector<bool>{true, true, false}));
  EXPECT_NE(t3->id, t1->id);
  EXPECT_EQ(t3->layers[1], t1->layers[1]);  // the unchanged step's layer is shared
  EXPECT_EQ(run_in(*t3, "cat /one /two").out, nonce + "\nchanged\n");
}

TEST(Templates, ExtendsAnotherTemplate) {
  REQUIRE_ROOT();
  Recorder rec;
  auto parent = build("t-parent", "FROM base\nENV GREETING=hello\nRUN echo parent > /parent\n", rec);
  ASSERT_TRUE(parent) << parent.error().message();
  auto child = build("t-child", "FROM t-parent\nUSER root\nWORKDIR /srv/app\nRUN echo child > child.txt\n", rec);
  ASSERT_TRUE(child) << child.error().message();
  EXPECT_EQ(child->config.user, "root");
  EXPECT_EQ(child->config.workdir, "/srv/app");
  EXPECT_EQ(run_in(*child, "cat /parent child.txt; echo $GREETING; pwd; id -u").out,
            "parent\nchild\nhello\n/srv/app\n0\n");
  // Files made by build steps belong to the sandbox's root, not to a host uid range.
  EXPECT_EQ(run_in(*child, "stat -c %U /srv/app/child.txt /parent").out, "root\nroot\n");
}

TEST(Templates, FailingStepShowsOutputAndExitCodeAndLeavesNothing) {
  REQUIRE_ROOT();
  Recorder rec;
  ASSERT_TRUE(env().store->remove("t-broken"));
  auto before = build_dirs();  // another build may be running on this state dir
  auto t = build("t-broken", "FROM base\nRUN echo about to fail; echo boom >&2; exit 3\n", rec);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("exit code 3"), std::string::npos) << t.error().message();
  EXPECT_NE(t.error().message().find("boom"), std::string::npos) << t.error().message();
  EXPECT_NE(t.error().message().find("t-broken.Dockerfile:2"), std::string::npos) << t.error().message();
  EXPECT_NE(rec.output.find("about to fail"), std::string::npos);
  auto found = env().store->find("t-broken");
  ASSERT_TRUE(found);
  EXPECT_FALSE(*found);
  for (auto& d : build_dirs()) EXPECT_TRUE(before.count(d)) << "left behind: " << d;
}

TEST(Templates, UnsupportedBaseImageIsAClearError) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = build("t-alpine", "FROM alpine:3.19\nRUN true\n", rec);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("t-alpine.Dockerfile:1"), std::string::npos) << t.error().message();
  EXPECT_NE(t.error().message().find("debian:bookworm"), std::string::npos) << t.error().message();
}

TEST(Templates, CopyFromTheContext) {
  REQUIRE_ROOT();
  char tmpl[] = "/tmp/brig-ctx-XXXXXX";
  std::string ctx = mkdtemp(tmpl);
  fs::create_directories(ctx + "/lib/sub");
  std::ofstream(ctx + "/run.sh") << "#!/bin/sh\necho ran " << new_sandbox_id() << "\n";
  std::ofstream(ctx + "/lib/sub/data.txt") << "data\n";
  Recorder rec;
  auto t = build("t-copy", "FROM base\nCOPY --chmod=755 run.sh /opt/app/\nCOPY --chown=user lib /home/user/lib\n", rec, ctx);
  ASSERT_TRUE(t) << t.error().message();
  auto r = run_in(*t, "/opt/app/run.sh; cat ~/lib/sub/data.txt; stat -c '%a %U' /opt/app/run.sh ~/lib/sub/data.txt");
  EXPECT_EQ(r.out.substr(0, 4), "ran ");
  EXPECT_NE(r.out.find("data\n755 root\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" user\n"), std::string::npos) << r.out;
  fs::remove_all(ctx);
}

// `brig template rm` as a user runs it: refused while a sandbox uses the template.
TEST(Templates, RemovingATemplateInUseIsRefused) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = build("t-inuse", "FROM base\nRUN echo in-use > /marker\n", rec);
  ASSERT_TRUE(t) << t.error().message();
  sandbox::SandboxSpec spec;
  spec.layers = env().store->layer_paths(*t);
  spec.template_name = t->name;
  auto sb = env().engine->create(spec);
  ASSERT_TRUE(sb) << sb.error().message();
  auto rm = [&] {
    std::string cmd = brig_binary() + " --state-dir " + env().engine->state_dir() + " template rm t-inuse 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int status = pclose(p);
    return std::make_pair(WEXITSTATUS(status), out);
  };
  auto [code, out] = rm();
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("in use by 1 sandbox"), std::string::npos) << out;
  ASSERT_TRUE(env().engine->kill((*sb)->id()));
  auto [code2, out2] = rm();
  EXPECT_EQ(code2, 0) << out2;
  auto gone = env().store->find("t-inuse");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(*gone);
}

// A template's start command runs when a sandbox starts, and the sandbox is handed out only
// once its readiness check passes.
TEST(Templates, StartCommandAndReadinessCheck) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = build("t-service",
                 "FROM python3\nRUN mkdir -p /srv/www && echo served > /srv/www/index.html\n"
                 "# brig:start sleep 0.5 && cd /srv/www && exec python3 -m http.server 8000\n"
                 "# brig:ready curl -sf http://127.0.0.1:8000/ >/dev/null\n",
                 rec);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_FALSE(t->config.start_cmd.empty());
  sandbox::SandboxSpec spec;
  spec.layers = env().store->layer_paths(*t);
  spec.template_name = t->name;
  auto sb = env().engine->create(spec);
  ASSERT_TRUE(sb);
  ASSERT_TRUE(store::start_template_services(**sb, *t));
  sandbox::ProcessSpec ps;
  ps.cmd = "curl";
  ps.args = {"-s", "http://127.0.0.1:8000/index.html"};
  auto r = (*sb)->run(ps, {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->out, "served\n");
  // A start command that dies is reported, not waited on forever.
  auto broken = *t;
  broken.config.start_cmd = "echo giving up; exit 4";
  broken.config.ready_cmd = "false";
  auto failed = store::start_template_services(**sb, broken, std::chrono::seconds(5));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("exited with code 4"), std::string::npos) << failed.error().message();
  EXPECT_NE(failed.error().message().find("giving up"), std::string::npos) << failed.error().message();
  (void)env().engine->kill((*sb)->id());
}

// One request to a sandbox's kernel host; every line it sends back until it closes.
std::vector<std::string> kernel_call(sandbox::Sandbox& sb, const std::string& request) {
  auto fd = sb.open_kernels();
  EXPECT_TRUE(fd) << (fd ? "" : fd.error().message());
  if (!fd) return {};
  std::string line = request + "\n";
  EXPECT_EQ(::write(fd->get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd->get(), buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  return split(all, '\n');
}

// security-cases.md (code interpreter): the kernel host that brig-init forks runs as the sandbox
// user, with no capabilities, and is not dumpable (nothing in the sandbox can read its fds or
// ptrace it); the template's python kernel is already running when the sandbox is handed out.
TEST(Templates, CodeInterpreterKernelHostIsUnprivilegedAndPrestartsPython) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = store::resolve_template(*env().engine, *env().store, "code-interpreter-v1", rec);
  ASSERT_TRUE(t) << t.error().message();
  ASSERT_EQ(t->config.kernels, std::vector<std::string>{"python"});
  sandbox::SandboxSpec spec;
  spec.layers = env().store->layer_paths(*t);
  spec.env = t->config.env;
  spec.kernels = t->config.kernels;
  spec.memory_bytes = 1ull << 30;
  auto sb = env().engine->create(spec);
  ASSERT_TRUE(sb) << sb.error().message();
  // The default python context exists before any cell ran: the zygote request started it.
  auto contexts = kernel_call(**sb, R"({"op":"list_contexts"})");
  ASSERT_FALSE(contexts.empty());
  EXPECT_NE(contexts[0].find(R"("language":"python")"), std::string::npos) << contexts[0];
  auto lines = kernel_call(**sb, R"({"op":"execute","code":"import os\nprint(os.getuid(), os.getcwd())\n6*7"})");
  std::string all;
  for (auto& l : lines) all += l + "\n";
  EXPECT_NE(all.find(R"("status":200)"), std::string::npos) << all;
  EXPECT_NE(all.find(R"("text":"1000 /home/user\n")"), std::string::npos) << all;
  EXPECT_NE(all.find(R"("is_main_result":true,"text":"42")"), std::string::npos) << all;
  EXPECT_NE(all.find(R"({"type":"end_of_execution"})"), std::string::npos) << all;
  sandbox::ProcessSpec ps;
  ps.cmd = "/bin/sh";
  ps.args = {"-c",
             "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = brig-kernels ] || continue; "
             "echo uid=$(awk '/^Uid:/{print $2 $3 $4 $5}' $p/status); echo $(grep ^CapEff $p/status); "
             "ls $p/fd >/dev/null 2>&1 && echo fds-visible || echo fds-hidden; done"};
  for (auto user : {User::user, User::root}) {
    ps.user = user;
    auto r = (*sb)->run(ps, {});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->out, "uid=1000100010001000\nCapEff: 0000000000000000\nfds-hidden\n") << sandbox::user_name(user);
  }
  (void)env().engine->kill((*sb)->id());
}

// One cell through the kernel host, its NDJSON lines gathered.
struct Cell {
  int status = 0;            // of the first line
  std::string body;          // of a refused request
  std::string out, err;      // stdout and stderr text
  std::vector<std::string> results;  // text of each result
  std::vector<nlohmann::json> errors;
  bool ended = false;        // end_of_execution came
  std::string all;           // every line, for messages
  std::string error_name() const { return errors.empty() ? "" : errors[0].value("name", ""); }
};

Cell cell(sandbox::Sandbox& sb, const nlohmann::json& request) {
  Cell c;
  for (auto& l : kernel_call(sb, request.dump())) {
    if (l.empty()) continue;
    c.all += l + "\n";
    auto j = nlohmann::json::parse(l, nullptr, false);
    if (!j.is_object()) continue;
    if (j.contains("status")) {
      c.status = j["status"];
      if (j.contains("body")) c.body = j["body"].is_string() ? j["body"].get<std::string>() : j["body"].dump();
      continue;
    }
    std::string type = j.value("type", "");
    if (type == "stdout") c.out += j.value("text", "");
    if (type == "stderr") c.err += j.value("text", "");
    if (type == "result") c.results.push_back(j.value("text", ""));
    if (type == "error") c.errors.push_back(j);
    if (type == "end_of_execution") c.ended = true;
  }
  return c;
}

Cell run_cell(sandbox::Sandbox& sb, const std::string& language, const std::string& code, nlohmann::json extra = {}) {
  nlohmann::json req = {{"op", "execute"}, {"language", language}, {"code", code}};
  if (extra.is_object()) req.update(extra);
  return cell(sb, req);
}

std::shared_ptr<sandbox::Sandbox> create_sandbox(const store::TemplateInfo& t, uint64_t memory = 512ull << 20) {
  sandbox::SandboxSpec spec;
  spec.layers = env().store->layer_paths(t);
  spec.template_name = t.name;
  spec.env = t.config.env;
  spec.kernels = t.config.kernels;
  spec.memory_bytes = memory;
  spec.lifetime = std::chrono::seconds(300);
  auto sb = env().engine->create(spec);
  EXPECT_TRUE(sb) << (sb ? "" : sb.error().message());
  return sb ? std::move(*sb) : nullptr;
}

// What the kernel host answers for a language its template lacks.
std::string missing_kernel(const std::string& language, const std::string& what) {
  return "this sandbox has no " + language + " kernel: " + what +
         " is not installed in its template; use the code-interpreter-v1 template (python, javascript, typescript, r and bash)";
}

// A template with bash and nothing else of note (no Python, no Node.js): bash cells run on the
// kernel host's own bash kernel, with state, streams, errors, env vars and interrupts; the
// languages it lacks are refused with what is missing.
TEST(Templates, LeanTemplateRunsBashCellsWithoutPython) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = build("t-lean",
                 "FROM debian:bookworm-slim\n"
                 "RUN apt-get update && apt-get install -y --no-install-recommends bash coreutils curl git "
                 "&& rm -rf /var/lib/apt/lists/*\n",
                 rec);
  ASSERT_TRUE(t) << t.error().message();
  auto sb = create_sandbox(*t);
  ASSERT_TRUE(sb);
  auto first = run_cell(*sb, "bash", "X=5; f() { echo \"f:$1\"; }; cd /tmp; echo \"val=$X\"; echo oops >&2; id -u");
  EXPECT_EQ(first.status, 200) << first.all;
  EXPECT_EQ(first.out, "val=5\n1000\n") << first.all;
  EXPECT_EQ(first.err, "oops\n") << first.all;  // stderr stays stderr
  EXPECT_TRUE(first.errors.empty()) << first.all;
  EXPECT_TRUE(first.ended);
  EXPECT_NE(first.all.find(R"("type":"number_of_executions")"), std::string::npos) << first.all;
  auto second = run_cell(*sb, "bash", "echo $X; f y; pwd; command -v python3 node || echo neither");
  EXPECT_EQ(second.out, "5\nf:y\n/tmp\nneither\n") << second.all;
  // Cells see stdin /dev/null and no fd of the host's: only what ls itself opens.
  EXPECT_EQ(run_cell(*sb, "bash", "ls /proc/self/fd | tr '\\n' ' '; cat; echo").out, "0 1 2 3 \n");
  // The last command's status, as the Jupyter bash kernel reported it.
  auto failed = run_cell(*sb, "bash", "echo before; false");
  EXPECT_EQ(failed.out, "before\n");
  EXPECT_EQ(failed.error_name(), "ExitCode") << failed.all;
  // Per-run env vars are set for the run only.
  EXPECT_EQ(run_cell(*sb, "bash", "echo \"[$PER_RUN]\"", {{"env_vars", {{"PER_RUN", "it's $(here)"}}}}).out,
            "[it's $(here)]\n");
  EXPECT_EQ(run_cell(*sb, "bash", "echo \"[${PER_RUN-unset}]\"").out, "[unset]\n");
  // timeout_ms interrupts the command and keeps the shell.
  auto started = std::chrono::steady_clock::now();
  auto slow = run_cell(*sb, "bash", "sleep 30; echo not-reached", {{"timeout_ms", 500}});
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_EQ(slow.error_name(), "TimeoutError") << slow.all;
  EXPECT_NE(slow.all.find("its state were kept"), std::string::npos) << slow.all;
  EXPECT_EQ(slow.out.find("not-reached"), std::string::npos);
  EXPECT_EQ(run_cell(*sb, "bash", "echo $X").out, "5\n");
  // A client that leaves interrupts its cell; the next one runs at once, with the state.
  {
    auto fd = sb->open_kernels();
    ASSERT_TRUE(fd);
    std::string line = R"({"op":"execute","language":"bash","code":"sleep 30"})" "\n";
    ASSERT_EQ(::write(fd->get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
    ::usleep(300'000);
  }
  started = std::chrono::steady_clock::now();
  EXPECT_EQ(run_cell(*sb, "bash", "echo $X").out, "5\n");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  // `exit` loses the shell, and says so.
  auto exited = run_cell(*sb, "bash", "exit 3");
  EXPECT_NE(exited.err.find("its state is lost"), std::string::npos) << exited.all;
  EXPECT_EQ(run_cell(*sb, "bash", "echo \"[${X-gone}]\"").out, "[gone]\n");
  // What the template lacks is named.
  auto py = run_cell(*sb, "python", "1");
  EXPECT_EQ(py.status, 400);
  EXPECT_EQ(py.body, missing_kernel("python", "Python with ipykernel"));
  auto js = run_cell(*sb, "javascript", "1");
  EXPECT_EQ(js.status, 400);
  EXPECT_EQ(js.body, missing_kernel("javascript", "Node.js or Deno"));
  auto ctx = cell(*sb, {{"op", "create_context"}, {"language", "ts"}});
  EXPECT_EQ(ctx.status, 400);
  EXPECT_EQ(ctx.body, missing_kernel("typescript", "Deno"));
  (void)env().engine->kill(sb->id());
}

// The built-in node template (Debian's Node.js, no Deno, no Python) runs JavaScript cells on
// the kernel host's node kernel.
TEST(Templates, NodeTemplateRunsJavaScriptCells) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = store::resolve_template(*env().engine, *env().store, "node", rec);
  ASSERT_TRUE(t) << t.error().message();
  auto sb = create_sandbox(*t);
  ASSERT_TRUE(sb);
  auto first = run_cell(*sb, "javascript",
                        "let a = 20; const who = process.version;\nconsole.log('out', who.startsWith('v'));\n"
                        "console.error('err'); a + 1");
  EXPECT_EQ(first.status, 200) << first.all;
  EXPECT_EQ(first.out, "out true\n") << first.all;
  EXPECT_EQ(first.err, "err\n") << first.all;
  EXPECT_EQ(first.results, std::vector<std::string>{"21"}) << first.all;
  EXPECT_TRUE(first.errors.empty()) << first.all;
  EXPECT_EQ(run_cell(*sb, "js", "[a * 2, typeof Deno, process.getuid()].join(',')").results,
            std::vector<std::string>{"40,undefined,1000"});
  // Thrown errors are error results with their type and message.
  auto thrown = run_cell(*sb, "javascript", "null.x");
  EXPECT_EQ(thrown.error_name(), "TypeError") << thrown.all;
  EXPECT_NE(thrown.errors[0].value("traceback", "").find("<cell"), std::string::npos) << thrown.all;
  // Top-level await: the value of the last expression, and its declarations kept.
  auto awaited = run_cell(*sb, "javascript", "const v = await new Promise((r) => setTimeout(() => r(a), 10));\nv + 1");
  EXPECT_EQ(awaited.results, std::vector<std::string>{"21"}) << awaited.all;
  EXPECT_EQ(run_cell(*sb, "javascript", "v").results, std::vector<std::string>{"20"});
  auto rejected = run_cell(*sb, "javascript", "await Promise.reject(new RangeError('nope'))");
  EXPECT_EQ(rejected.error_name(), "RangeError") << rejected.all;
  // Per-run env vars, and require() from the context's directory.
  EXPECT_EQ(run_cell(*sb, "javascript", "process.env.PER_RUN", {{"env_vars", {{"PER_RUN", "yes"}}}}).results,
            std::vector<std::string>{"yes"});
  EXPECT_TRUE(run_cell(*sb, "javascript", "process.env.PER_RUN").results.empty());
  EXPECT_EQ(run_cell(*sb, "javascript", "require('os').homedir()").results, std::vector<std::string>{"/home/user"});
  // timeout_ms interrupts a busy loop and an await; the state is kept.
  for (const char* code : {"while (true) {}", "await new Promise(() => {})"}) {
    auto started = std::chrono::steady_clock::now();
    auto slow = run_cell(*sb, "javascript", code, {{"timeout_ms", 1000}});
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(6)) << code;
    EXPECT_EQ(slow.error_name(), "TimeoutError") << slow.all;
    EXPECT_NE(slow.all.find("its state were kept"), std::string::npos) << slow.all;
    EXPECT_EQ(run_cell(*sb, "javascript", "a").results, std::vector<std::string>{"20"}) << code;
  }
  // Code that blocks the event loop after an await cannot be interrupted: the kernel is
  // restarted, and the caller is told the state is gone.
  auto stuck = run_cell(*sb, "javascript", "await null; while (true) {}", {{"timeout_ms", 500}});
  EXPECT_EQ(stuck.error_name(), "TimeoutError") << stuck.all;
  EXPECT_NE(stuck.all.find("state (variables, imports) was lost"), std::string::npos) << stuck.all;
  EXPECT_EQ(run_cell(*sb, "javascript", "typeof a").results, std::vector<std::string>{"undefined"});
  // bash runs here too; python and typescript are named as missing.
  EXPECT_EQ(run_cell(*sb, "bash", "node -e 'console.log(1+1)'").out, "2\n");
  auto py = run_cell(*sb, "python", "1");
  EXPECT_EQ(py.status, 400);
  EXPECT_EQ(py.body, missing_kernel("python", "Python with ipykernel"));
  auto ts = run_cell(*sb, "typescript", "1");
  EXPECT_EQ(ts.status, 400);
  EXPECT_EQ(ts.body, missing_kernel("typescript", "Deno"));
  (void)env().engine->kill(sb->id());
}

// code-interpreter-v1: bash cells run on the host's bash kernel (no Python in the way), while
// JavaScript and TypeScript stay on Deno's Jupyter kernel.
TEST(Templates, CodeInterpreterBashCellsRunOnTheLineKernel) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = store::resolve_template(*env().engine, *env().store, "code-interpreter-v1", rec);
  ASSERT_TRUE(t) << t.error().message();
  auto sb = create_sandbox(*t, 1ull << 30);
  ASSERT_TRUE(sb);
  auto first = run_cell(*sb, "bash", "X=5; cd /tmp; echo \"val=$X\"; tr '\\0' ' ' < /proc/$$/cmdline; echo; "
                                     "cat /proc/$PPID/comm");
  EXPECT_EQ(first.out, "val=5\n/usr/bin/bash --norc --noprofile --noediting -i \nbrig-kernels\n") << first.all;
  auto second = run_cell(*sb, "bash", "echo $X; pwd; ls /nonexistent");
  EXPECT_EQ(second.out, "5\n/tmp\n") << second.all;
  EXPECT_NE(second.err.find("No such file or directory"), std::string::npos) << second.all;
  EXPECT_EQ(second.error_name(), "ExitCode") << second.all;
  auto slow = run_cell(*sb, "bash", "sleep 30", {{"timeout_ms", 500}});
  EXPECT_EQ(slow.error_name(), "TimeoutError") << slow.all;
  EXPECT_EQ(run_cell(*sb, "bash", "echo $X").out, "5\n");
  EXPECT_EQ(run_cell(*sb, "javascript", "typeof Deno").results, std::vector<std::string>{"object"});
  EXPECT_EQ(run_cell(*sb, "typescript", "const n: number = 21; n * 2").results, std::vector<std::string>{"42"});
  (void)env().engine->kill(sb->id());
}

struct Builtin {
  const char* name;
  const char* script;
  const char* expect;
};

void PrintTo(const Builtin& b, std::ostream* os) { *os << b.name; }

class BuiltinTemplates : public ::testing::TestWithParam<Builtin> {};

TEST_P(BuiltinTemplates, RunsItsLanguage) {
  REQUIRE_ROOT();
  Recorder rec;
  auto t = store::resolve_template(*env().engine, *env().store, GetParam().name, rec);
  ASSERT_TRUE(t) << t.error().message() << "\n" << rec.output.substr(rec.output.size() > 4000 ? rec.output.size() - 4000 : 0);
  auto r = run_in(*t, GetParam().script);
  EXPECT_EQ(r.status.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, GetParam().expect) << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    All, BuiltinTemplates,
    ::testing::Values(
        Builtin{"minimal",
                "bash -c 'echo $BASH_VERSION' | cut -c1; git --version | cut -d' ' -f1; id -un; pwd; "
                "command -v python3 node || echo lean",
                "5\ngit\nuser\n/home/user\nlean\n"},
        // E2B's default: python (and pip) and node (and npm); pip and npm -g install as the user.
        Builtin{"base",
                "python -c 'import sys; print(sys.version_info[0])'; pip --version | cut -d' ' -f1; "
                "node -e 'console.log(1 + 1)'; npm --version | cut -c1 | tr -d '\\n' | wc -c; "
                "python -c 'import ipykernel; print(\"ipykernel\")'; test -e /usr/lib/python3.11/EXTERNALLY-MANAGED || echo no-pep668; "
                "test -w /usr/local/lib/python3.11/dist-packages && test -w /usr/local/lib/node_modules && echo writable",
                "3\npip\n2\n1\nipykernel\nno-pep668\nwritable\n"},
        Builtin{"python3",
                "python3 -c 'import numpy, pandas, matplotlib, requests; print(int(numpy.arange(4).sum()))'; "
                "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'print(\"venv\")'",
                "6\nvenv\n"},
        Builtin{"node", "node -e 'console.log(1 + 1)'; npm --version | cut -c1 | tr -d '\\n' | wc -c", "2\n1\n"},
        Builtin{"code-interpreter-v1",
                "python3 -c 'import ipykernel, pandas; print(\"ipykernel\")'; node -e 'console.log(\"node\")'; "
                "deno eval 'console.log(\"deno\")'; test -f /usr/local/share/jupyter/kernels/deno/kernel.json && echo kernelspec; "
                "Rscript -e 'cat(\"r\\n\")'; test -f /usr/share/jupyter/kernels/ir/kernel.json && echo irkernel",
                "ipykernel\nnode\ndeno\nkernelspec\nr\nirkernel\n"}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (auto& c : n)
        if (c == '-') c = '_';
      return n;
    });

}  // namespace
}  // namespace brig::testing
