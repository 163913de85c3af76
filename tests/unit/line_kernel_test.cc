// brig's line kernels (bash, JavaScript on Node.js): the pure parts, then the kernels themselves
// driven as the kernel host drives them (poll, tick, reap), with this machine's bash and node
// outside any sandbox. Sandboxed end-to-end runs are in tests/templates.
#include "init/line_kernel.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "init/kernel.h"

namespace brig::init {
namespace {

using namespace std::chrono_literals;

TEST(LineKernel, LanguagesChooseTheirKernel) {
  Installed all{true, true, true, "/bin/bash", "/usr/bin/node"};
  auto name = [](const Result<KernelChoice>& c) { return c ? c->name : "error: " + c.error().message(); };
  EXPECT_EQ(name(choose_kernel("python", all)), "python3");
  EXPECT_EQ(name(choose_kernel("javascript", all)), "deno");  // Deno's kernel when there is one
  EXPECT_EQ(name(choose_kernel("typescript", all)), "deno");
  EXPECT_EQ(name(choose_kernel("r", all)), "ir");
  EXPECT_EQ(name(choose_kernel("bash", all)), "bash");
  EXPECT_EQ(choose_kernel("bash", all)->family, KernelFamily::bash);
  EXPECT_EQ(choose_kernel("python", all)->family, KernelFamily::jupyter);

  Installed node_only{false, false, false, "/bin/bash", "/usr/bin/node"};  // the node template
  EXPECT_EQ(name(choose_kernel("javascript", node_only)), "node");
  EXPECT_EQ(choose_kernel("javascript", node_only)->family, KernelFamily::node);
  EXPECT_EQ(name(choose_kernel("typescript", node_only)),
            "error: this sandbox has no typescript kernel: Deno is not installed in its template; use the code-interpreter-v1 template (python, javascript, typescript, r and bash)");
  EXPECT_EQ(name(choose_kernel("python", node_only)),
            "error: this sandbox has no python kernel: Python with ipykernel is not installed in its template; use the code-interpreter-v1 template (python, javascript, typescript, r and bash)");

  Installed lean{false, false, false, "/usr/bin/bash", ""};
  EXPECT_EQ(name(choose_kernel("bash", lean)), "bash");
  auto js = choose_kernel("javascript", lean);
  ASSERT_FALSE(js);
  EXPECT_TRUE(js.error().is(errc::not_found));
  EXPECT_EQ(js.error().message(), "this sandbox has no javascript kernel: Node.js or Deno is not installed in its template; use the code-interpreter-v1 template (python, javascript, typescript, r and bash)");
  EXPECT_EQ(name(choose_kernel("r", lean)),
            "error: this sandbox has no r kernel: R with IRkernel is not installed in its template; use the code-interpreter-v1 template (python, javascript, typescript, r and bash)");
  EXPECT_EQ(name(choose_kernel("bash", Installed{})), "error: this sandbox has no bash kernel: bash is not installed in its template; use the code-interpreter-v1 template (python, javascript, typescript, r and bash)");
  auto cobol = choose_kernel("cobol", all);
  ASSERT_FALSE(cobol);
  EXPECT_TRUE(cobol.error().is(errc::invalid_argument));
}

TEST(LineKernel, OutputGoesByLinesAndNeverSplitsACharacter) {
  OutputBuffer b(16);
  EXPECT_EQ(b.add("abc"), "");  // a partial line waits
  EXPECT_EQ(b.add("def\ngh"), "abcdef\n");
  EXPECT_EQ(b.add("i\nj\nk"), "ghi\nj\n");
  EXPECT_EQ(b.take(), "k");
  EXPECT_TRUE(b.empty());
  // A line longer than the limit goes in pieces, each ending on a whole character.
  std::string euro = "\xE2\x82\xAC";  // €, three bytes
  std::string out = b.add("0123456789abcd" + euro);  // 17 bytes: the euro sign would cross 16
  EXPECT_EQ(out, "0123456789abcd" + euro);
  EXPECT_EQ(b.add("0123456789abcde" + euro.substr(0, 2)), "0123456789abcde");  // incomplete € held
  EXPECT_EQ(b.take(true), "");
  EXPECT_EQ(b.add(euro.substr(2) + "\n"), euro + "\n");
  b.add("x" + euro.substr(0, 1));
  EXPECT_EQ(b.take(true), "x");
  EXPECT_EQ(b.take(false), euro.substr(0, 1));  // at the end of a step, what the kernel wrote
}

TEST(LineKernel, BashMarkersAndLines) {
  EXPECT_FALSE(bash::parse_marker("abc 1 0", "abd"));
  EXPECT_FALSE(bash::parse_marker("tok 1", "tok"));
  EXPECT_FALSE(bash::parse_marker("tok x 0", "tok"));
  EXPECT_FALSE(bash::parse_marker("tok 1 0 extra", "tok"));
  EXPECT_FALSE(bash::parse_marker("tokk 1 0", "tok"));
  EXPECT_FALSE(bash::parse_marker("tok 1 0", ""));
  auto m = bash::parse_marker("tok 12 127", "tok");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->seq, 12u);
  EXPECT_EQ(m->status, 127);
  // The cell's path is quoted; stdin and the marker fd are the cell's neither.
  auto line = bash::step_line("/tmp/a'b/cell.sh", "tok", 3);
  EXPECT_EQ(line, "{ \\. '/tmp/a'\\''b/cell.sh'; } </dev/null 3>&-; \\builtin printf '%s %s %d\\n' tok 3 \"$?\" >&3\n");
  EXPECT_EQ(bash::sync_line("tok", 4), "\\builtin printf '%s %s 130\\n' tok 4 >&3\n");
  EXPECT_TRUE(bash::step_error(0, false).is_null());
  EXPECT_EQ(bash::step_error(2, false)["ename"], "ExitCode");
  EXPECT_EQ(bash::step_error(2, false)["evalue"], "2");
  EXPECT_EQ(bash::step_error(0, true)["ename"], "KeyboardInterrupt");
}

TEST(LineKernel, NodeMessages) {
  EXPECT_EQ(node::step_message("1 + 1\n", true), "{\"code\":\"1 + 1\\n\",\"silent\":false}\n");
  auto r = node::output_line({{"type", "result"}, {"data", {{"text/plain", "'2,4,6'"}}}});
  EXPECT_EQ(r["type"], "result");
  EXPECT_EQ(r["is_main_result"], true);
  EXPECT_EQ(r["text"], "2,4,6");
  auto e = node::output_line({{"type", "error"}, {"ename", "TypeError"}, {"evalue", "x"}, {"traceback", {"TypeError: x"}}});
  EXPECT_EQ(e["name"], "TypeError");
  EXPECT_EQ(e["traceback"], "TypeError: x");
  EXPECT_TRUE(node::output_line({{"type", "done"}}).is_null());
  EXPECT_TRUE(node::output_line({{"type", 5}}).is_null());
  EXPECT_TRUE(node::output_line({{"type", "result"}, {"data", "x"}}).is_null());
}

// ---- the kernels, driven like the host drives them ------------------------------------------

struct Sink final : StepSink {
  std::string out, err;
  std::vector<json> lines;
  bool finished = false;
  void stream(bool is_stderr, std::string_view text) override { (is_stderr ? err : out).append(text); }
  void line(json l) override { lines.push_back(std::move(l)); }
  void done() override { finished = true; }
  const json* find(const std::string& type) const {
    for (auto& l : lines)
      if (l.value("type", "") == type) return &l;
    return nullptr;
  }
};

class Driver {
 public:
  explicit Driver(std::unique_ptr<Kernel> k) : kernel(std::move(k)) {
    char tmpl[] = "/tmp/brig-line-kernel-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Driver() {
    kernel->stop();
    std::filesystem::remove_all(dir);
  }

  bool start() {
    KernelLaunch l{"ctx", dir, dir, {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", dir}}};
    auto s = kernel->start(l);
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    return s && pump(nullptr, [&] { return kernel->ready(); }, 20s);
  }

  // Polls until `until` or the timeout; `action` runs once after `after`.
  bool pump(StepSink* sink, const std::function<bool()>& until, std::chrono::milliseconds timeout,
            std::chrono::milliseconds after = 0ms, const std::function<void()>& action = {}) {
    auto start = KernelClock::now();
    bool acted = false;
    while (!until()) {
      auto now = KernelClock::now();
      if (now - start > timeout) return false;
      if (action && !acted && now - start >= after) {
        acted = true;
        action();
      }
      std::vector<zmq_pollitem_t> items;
      if (kernel->running()) kernel->poll_items(items);
      zmq_poll(items.data(), static_cast<int>(items.size()), 10);
      if (kernel->running()) kernel->on_poll(items.data(), sink);
      kernel->tick(KernelClock::now(), sink);
      int status;
      if (kernel->running() && ::waitpid(kernel->pid(), &status, WNOHANG) == kernel->pid()) {
        exited = true;
        handled_exit = kernel->exited(status, sink);
      }
    }
    return true;
  }

  Sink run(const std::string& code, bool main = true, std::chrono::milliseconds interrupt_after = 0ms) {
    Sink s;
    kernel->begin(code, main, s);
    bool ok = pump(&s, [&] { return s.finished || (exited && !handled_exit); }, 20s, interrupt_after,
                   interrupt_after > 0ms ? std::function<void()>([&] { kernel->interrupt(); }) : nullptr);
    EXPECT_TRUE(ok) << "the step did not end: " << code;
    return s;
  }

  std::unique_ptr<Kernel> kernel;
  std::string dir;
  bool exited = false, handled_exit = false;
};

TEST(LineKernel, BashKeepsStateStreamsAndReportsStatus) {
  Driver d(make_bash_kernel("/bin/bash"));
  ASSERT_TRUE(d.start());
  auto a = d.run("X=41; f() { echo \"f:$1\"; }; cd /; echo out; echo err >&2");
  EXPECT_EQ(a.out, "out\n");
  EXPECT_EQ(a.err, "err\n");
  ASSERT_TRUE(a.find("number_of_executions"));
  EXPECT_EQ((*a.find("number_of_executions"))["execution_count"], 1);
  EXPECT_FALSE(a.find("error"));
  auto b = d.run("echo $((X+1)); f x; pwd; cat; echo \"stdin: $?\"");  // cat reads /dev/null
  EXPECT_EQ(b.out, "42\nf:x\n/\nstdin: 0\n");
  EXPECT_EQ((*b.find("number_of_executions"))["execution_count"], 2);
  // Ordinary output that looks like the protocol is output; fd 3 is not the cell's.
  auto c = d.run("echo 3 1 0; printf 'x' >&3; echo after");
  EXPECT_NE(c.out.find("3 1 0\n"), std::string::npos);
  EXPECT_NE(c.out.find("after\n"), std::string::npos);
  EXPECT_NE(c.err.find("Bad file descriptor"), std::string::npos) << c.err;
  // A failing last command is an error result, as with the Jupyter bash kernel.
  auto e = d.run("echo before; false");
  EXPECT_EQ(e.out, "before\n");
  ASSERT_TRUE(e.find("error"));
  EXPECT_EQ((*e.find("error"))["name"], "ExitCode");
  EXPECT_EQ((*e.find("error"))["value"], "1");
  // Aliases cannot break the lines the host sends.
  auto al = d.run("alias printf=false builtin=false unset=false set=false; echo ok");
  EXPECT_EQ(al.out, "ok\n");
  EXPECT_EQ(d.run("echo still").out, "still\n");
  d.run("unalias -a");
  // A partial last line, multi-byte text, an empty cell.
  EXPECT_EQ(d.run("printf 'no newline \\xE2\\x82\\xAC'").out, "no newline \xE2\x82\xAC");
  auto empty = d.run("   \n");
  EXPECT_TRUE(empty.finished);
  EXPECT_FALSE(empty.find("error"));
  // 10 MB in one line arrives whole, before the end of the cell.
  auto big = d.run("head -c 10000000 /dev/zero | tr '\\0' x; echo");
  EXPECT_EQ(big.out.size(), 10'000'001u);
  EXPECT_EQ(big.out.find_first_not_of('x'), 10'000'000u);
}

TEST(LineKernel, BashInterruptKeepsTheShell) {
  Driver d(make_bash_kernel("/bin/bash"));
  ASSERT_TRUE(d.start());
  d.run("KEEP=yes");
  for (const char* cell : {"sleep 30; echo not-reached", "while :; do :; done; echo not-reached",
                           "f() { sleep 30; }; f; echo not-reached"}) {
    auto started = KernelClock::now();
    auto s = d.run(cell, true, 300ms);
    EXPECT_LT(KernelClock::now() - started, 5s) << cell;
    EXPECT_EQ(s.out.find("not-reached"), std::string::npos) << cell;
    ASSERT_TRUE(s.find("error")) << cell;
    EXPECT_EQ((*s.find("error"))["name"], "KeyboardInterrupt") << cell;
  }
  EXPECT_EQ(d.run("echo $KEEP").out, "yes\n");
  EXPECT_FALSE(d.exited);
  // Background jobs survive an interrupt of the cell that follows them.
  d.run("sleep 30 & BG=$!");
  d.run("sleep 30", true, 200ms);
  EXPECT_EQ(d.run("kill -0 $BG && echo alive; kill $BG").out, "alive\n");
}

TEST(LineKernel, BashExitIsReportedAndAStepIsOver) {
  Driver d(make_bash_kernel("/bin/bash"));
  ASSERT_TRUE(d.start());
  auto s = d.run("echo bye; exit 3");
  EXPECT_EQ(s.out, "bye\n");
  EXPECT_NE(s.err.find("bash exited; a new shell was started (its state is lost)"), std::string::npos);
  ASSERT_TRUE(s.find("error"));
  EXPECT_EQ((*s.find("error"))["value"], "3");
  EXPECT_TRUE(d.handled_exit);
}

// The machine's node, wherever PATH has it ("" when there is none).
std::string node_path() {
  const char* path = std::getenv("PATH");
  return find_executable("node", path ? path : "/usr/local/bin:/usr/bin:/bin");
}
bool have_node() { return !node_path().empty(); }

TEST(LineKernel, NodeKeepsStateAwaitsAndReportsErrors) {
  if (!have_node()) GTEST_SKIP() << "no node on PATH";
  Driver d(make_node_kernel(node_path()));
  ASSERT_TRUE(d.start()) << d.kernel->start_log();
  auto a = d.run("let a = 20; function twice(x) { return 2 * x }\nconsole.log('out'); console.error('err'); a + 1");
  EXPECT_EQ(a.out, "out\n");
  EXPECT_EQ(a.err, "err\n");
  ASSERT_TRUE(a.find("result"));
  EXPECT_EQ((*a.find("result"))["text"], "21");
  EXPECT_EQ(a.lines.back()["type"], "result");  // after the number of executions
  auto b = d.run("const v = await new Promise((r) => setTimeout(() => r(a), 20)); twice(v) + 2");
  EXPECT_EQ((*b.find("result"))["text"], "42");
  EXPECT_EQ((*d.run("v").find("result"))["text"], "20");  // declared in an await cell, kept
  EXPECT_EQ((*d.run("[1,2,3].map(x => x * 2).join(',')").find("result"))["text"], "2,4,6");
  EXPECT_FALSE(d.run("undefined").find("result"));
  auto e = d.run("null.x");
  ASSERT_TRUE(e.find("error"));
  EXPECT_EQ((*e.find("error"))["name"], "TypeError");
  EXPECT_NE((*e.find("error"))["traceback"].get<std::string>().find("<cell"), std::string::npos);
  auto r = d.run("await Promise.reject(new RangeError('no'))");
  EXPECT_EQ((*r.find("error"))["name"], "RangeError");
  EXPECT_EQ((*r.find("error"))["value"], "no");
  EXPECT_EQ((*d.run("require('path').join('a', 'b')").find("result"))["text"], "a/b");
  // Env steps in the node dialect run silently.
  Sink env = d.run("{ process.env.BRIG_T = 'x'; }", false);
  EXPECT_TRUE(env.lines.empty());
  EXPECT_EQ((*d.run("process.env.BRIG_T").find("result"))["text"], "x");
  // A late error of a callback does not end the kernel.
  // (Late enough to be after that cell's end even on a loaded machine.)
  d.run("setTimeout(() => { throw new Error('late') }, 200); 0");
  auto after = d.run("await new Promise((r) => setTimeout(r, 1000)); a");
  EXPECT_NE(after.err.find("Uncaught Error: late"), std::string::npos) << after.err;
  EXPECT_EQ((*after.find("result"))["text"], "20");
  // 10 MB of console output arrives whole, before the value.
  auto big = d.run("console.log('\u20ac'.repeat(5_000_000)); 'end'");
  EXPECT_EQ(big.out.size(), 15'000'001u);
  EXPECT_EQ(big.lines.back()["text"], "end");
}

TEST(LineKernel, NodeInterruptKeepsState) {
  if (!have_node()) GTEST_SKIP() << "no node on PATH";
  Driver d(make_node_kernel(node_path()));
  ASSERT_TRUE(d.start()) << d.kernel->start_log();
  d.run("var keep = 7");
  for (const char* cell : {"while (true) {}", "await new Promise(() => {})",
                           "require('child_process').execSync('sleep 30')"}) {
    auto started = KernelClock::now();
    auto s = d.run(cell, true, 300ms);
    EXPECT_LT(KernelClock::now() - started, 5s) << cell;
    ASSERT_TRUE(s.find("error")) << cell;
    EXPECT_EQ((*s.find("error"))["name"], "KeyboardInterrupt") << cell;
  }
  EXPECT_EQ((*d.run("keep").find("result"))["text"], "7");
  EXPECT_FALSE(d.exited);
}

TEST(LineKernel, NodeExitIsLeftToTheHost) {
  if (!have_node()) GTEST_SKIP() << "no node on PATH";
  Driver d(make_node_kernel(node_path()));
  ASSERT_TRUE(d.start()) << d.kernel->start_log();
  Sink s;
  d.kernel->begin("console.log('bye'); process.exit(4)", true, s);
  d.pump(&s, [&] { return d.exited; }, 10s);
  ASSERT_TRUE(d.exited);
  EXPECT_EQ(s.out, "bye\n");  // delivered before the host reports the state lost
  EXPECT_FALSE(d.handled_exit);
}

}  // namespace
}  // namespace brig::init
