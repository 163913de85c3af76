// brig template build|list|rm|show: templates built from Dockerfiles, without Docker.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iostream>

#include "base/util.h"
#include "cli/commands.h"
#include "cli/templates.h"
#include "store/builtin.h"

namespace brig::cli {
namespace {

struct TemplateArgs {
  std::string path;
  std::string name;
  std::string tag = "latest";
  std::vector<std::string> build_args;
  bool no_cache = false;
  bool verbose = false;
  std::string ref;
};

int fail(const Error& e, int code = 1) {
  std::cerr << "brig: " << e.message() << "\n";
  return code;
}

struct Opened {
  std::unique_ptr<sandbox::Engine> engine;
  std::unique_ptr<store::TemplateStore> store;
};

Result<Opened> open_all(const Globals& g) {
  const config::Config& c = g.config;
  BRIG_TRY_ASSIGN(engine, sandbox::Engine::open({.state_dir = c.server.state_dir, .sandbox = c.sandbox, .limits = c.limits, .network = c.network}));
  BRIG_TRY_ASSIGN(store, store::TemplateStore::open(engine->state_dir(), c.build));
  return Opened{std::move(engine), std::move(store)};
}

std::string format_time(int64_t ms) {
  std::time_t t = ms / 1000;
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::localtime(&t));
  return buf;
}

size_t in_use(sandbox::Engine& engine, const std::string& name) {
  size_t n = 0;
  for (auto& s : engine.list()) n += s.template_name == name && s.state == "running";
  return n;
}

int build(const TemplateArgs& a, const Globals& g) {
  struct stat st;
  if (::stat(a.path.c_str(), &st) != 0) return fail(Error::from_errno(errno, "'" + a.path + "'"));
  std::string dockerfile = a.path, context;
  if (S_ISDIR(st.st_mode)) {
    context = a.path;
    dockerfile = a.path + "/e2b.Dockerfile";
    if (::access(dockerfile.c_str(), R_OK) != 0) dockerfile = a.path + "/Dockerfile";
  } else {
    auto slash = a.path.find_last_of('/');
    context = slash == std::string::npos ? "." : a.path.substr(0, slash);
  }
  auto text = read_small_file(dockerfile, 1 << 20);
  if (!text) return fail(text.error().wrap("read definition"));
  auto opened = open_all(g);
  if (!opened) return fail(opened.error());
  TerminalProgress progress(a.verbose);
  store::BuildRequest req;
  req.definition = *text;
  req.definition_name = dockerfile;
  req.context_dir = context;
  req.name = a.name;
  req.tag = a.tag;
  req.no_cache = a.no_cache;
  for (auto& kv : a.build_args) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return fail(Error::make(errc::invalid_argument, "--build-arg wants KEY=VALUE"));
    req.build_args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto& engine = *opened->engine;
  auto& store = *opened->store;
  req.resolve_parent = [&](const std::string& parent) { return store::resolve_template(engine, store, parent, progress); };
  auto started = std::chrono::steady_clock::now();
  auto info = store::build_template(engine, store, req, progress);
  if (!info) return fail(info.error());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("built template %s:%s (id %s, %s, %zu layers) in %.1fs\n", info->name.c_str(), info->tag.c_str(),
              info->id.c_str(), format_size(info->size_bytes).c_str(), info->layers.size(), secs);
  return 0;
}

int list(const Globals& g) {
  auto opened = open_all(g);
  if (!opened) return fail(opened.error());
  auto all = opened->store->list();
  if (!all) return fail(all.error());
  std::printf("%-22s %-8s %-20s %10s  %-16s %s\n", "NAME", "TAG", "ID", "SIZE", "CREATED", "IN USE");
  for (auto& t : *all)
    std::printf("%-22s %-8s %-20s %10s  %-16s %zu\n", t.name.c_str(), t.tag.c_str(), t.id.c_str(),
                format_size(t.size_bytes).c_str(), format_time(t.created_ms).c_str(), in_use(*opened->engine, t.name));
  for (auto& [name, def] : store::builtin_templates()) {
    bool built = false;
    for (auto& t : *all) built |= t.name == name;
    if (!built) std::printf("%-22s %-8s %-20s %10s  %-16s %s\n", name.c_str(), "-", "(built-in, not built yet)", "-", "-", "-");
  }
  return 0;
}

int show(const TemplateArgs& a, const Globals& g) {
  auto opened = open_all(g);
  if (!opened) return fail(opened.error());
  auto t = opened->store->find(a.ref);
  if (!t) return fail(t.error());
  if (!*t) return fail(Error::make(errc::not_found, "template '" + a.ref + "' not found"));
  const auto& c = (*t)->config;
  std::printf("name:      %s:%s\nid:        %s\nsize:      %s\ncreated:   %s\nsource:    %s\nuser:      %s\nworkdir:   %s\n",
              (*t)->name.c_str(), (*t)->tag.c_str(), (*t)->id.c_str(), format_size((*t)->size_bytes).c_str(),
              format_time((*t)->created_ms).c_str(), (*t)->source.c_str(), c.user.c_str(), c.workdir.c_str());
  if (c.cpus) std::printf("cpus:      %g\n", c.cpus);
  if (c.memory_bytes) std::printf("memory:    %s\n", format_size(c.memory_bytes).c_str());
  if (c.disk_bytes) std::printf("disk:      %s\n", format_size(c.disk_bytes).c_str());
  if (!c.start_cmd.empty()) std::printf("start:     %s\n", c.start_cmd.c_str());
  if (!c.ready_cmd.empty()) std::printf("ready:     %s\n", c.ready_cmd.c_str());
  for (auto& k : c.kernels) std::printf("kernel:    %s (started with each sandbox)\n", k.c_str());
  for (auto& [k, v] : c.env) std::printf("env:       %s=%s\n", k.c_str(), v.c_str());
  for (auto& [k, v] : c.labels) std::printf("label:     %s=%s\n", k.c_str(), v.c_str());
  std::printf("layers (topmost first):\n");
  for (auto& l : (*t)->layers)
    std::printf("  %s  %s\n", l.substr(0, 20).c_str(), format_size(opened->store->layer_size(l)).c_str());
  std::printf("in use:    %zu sandbox(es)\n", in_use(*opened->engine, (*t)->name));
  return 0;
}

int remove(const TemplateArgs& a, const Globals& g) {
  auto opened = open_all(g);
  if (!opened) return fail(opened.error());
  auto t = opened->store->find(a.ref);
  if (!t) return fail(t.error());
  if (!*t) return fail(Error::make(errc::not_found, "template '" + a.ref + "' not found"));
  if (size_t n = in_use(*opened->engine, (*t)->name))
    return fail(Error::make(errc::conflict, "template '" + (*t)->name + "' is in use by " + std::to_string(n) +
                                                " sandbox(es); kill them first"));
  if (auto r = opened->store->remove((*t)->name); !r) return fail(r.error());
  std::printf("removed template %s (its layers stay cached for rebuilds)\n", (*t)->name.c_str());
  return 0;
}

}  // namespace

Runner add_template(CLI::App& app, Globals& globals) {
  auto a = std::make_shared<TemplateArgs>();
  auto* sub = app.add_subcommand("template", "Build, list, show and remove sandbox templates.");
  sub->require_subcommand(1);
  auto* b = sub->add_subcommand("build", "Build a template from a Dockerfile (no Docker needed).");
  b->add_option("path", a->path, "A directory (with e2b.Dockerfile or Dockerfile; also the COPY context) or a Dockerfile")
      ->required();
  b->add_option("-n,--name", a->name, "Template name ([a-z0-9-_.], 1-64 chars)")->required();
  b->add_option("-t,--tag", a->tag, "Tag")->capture_default_str();
  b->add_option("--build-arg", a->build_args, "ARG value KEY=VALUE (repeatable)");
  b->add_flag("--no-cache", a->no_cache, "Run every step again instead of reusing cached layers");
  b->add_flag("-v,--verbose", a->verbose, "Show each step's output as it runs");
  b->footer(
      "Supported: FROM debian:bookworm[-slim] or FROM <template>, RUN, ENV, ARG, WORKDIR, USER user|root,\n"
      "COPY/ADD of local files, LABEL, EXPOSE (ignored), and '# brig:start CMD', '# brig:ready CMD',\n"
      "'# brig:cpus N', '# brig:memory SIZE', '# brig:disk SIZE' comment directives. Steps are cached by content hash.\n"
      "Example: brig template build ./my-template --name my-template");
  auto* l = sub->add_subcommand("list", "List templates (name, id, size, created, in use).");
  auto* s = sub->add_subcommand("show", "Show one template's layers and settings.");
  s->add_option("template", a->ref, "Name, name:tag or id")->required();
  auto* r = sub->add_subcommand("rm", "Remove a template (refused while sandboxes use it).");
  r->add_option("template", a->ref, "Name, name:tag or id")->required();
  return [=, &globals]() -> int {
    if (!sub->parsed()) return -1;
    if (b->parsed()) return build(*a, globals);
    if (l->parsed()) return list(globals);
    if (s->parsed()) return show(*a, globals);
    if (r->parsed()) return remove(*a, globals);
    return 2;
  };
}

}  // namespace brig::cli
