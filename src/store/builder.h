// Builds a template from a Dockerfile subset (store/dockerfile.h) without Docker:
//  - FROM debian:bookworm[-slim] is a layer made by mmdebstrap from the Debian archive;
//    FROM <template> starts from that template's layers;
//  - every RUN, COPY and WORKDIR runs in a build sandbox (an ordinary brig sandbox over the
//    layers so far, with the host's network, as root unless USER says otherwise) whose
//    writable layer is kept in a host directory and becomes the next read-only layer;
//  - a layer's key is the hash of its parent's key and of the step (its text, the environment,
//    user, workdir and, for COPY, the content of the files), so an unchanged step is reused
//    and a changed one invalidates only what follows.
// A failed step leaves no template and no layer behind.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"
#include "sandbox/engine.h"
#include "store/template_store.h"

namespace brig::store {

struct BuildRequest {
  std::string definition;         // the Dockerfile text
  std::string definition_name;    // for messages ("templates/base/Dockerfile")
  std::string context_dir;        // where COPY sources come from; "" = COPY not allowed
  std::string name;
  std::string tag = "latest";
  std::map<std::string, std::string> build_args;
  bool no_cache = false;
  // Finds (or builds, for built-ins) the template named in FROM <template>.
  std::function<Result<TemplateInfo>(const std::string&)> resolve_parent;
};

class BuildProgress {
 public:
  virtual ~BuildProgress() = default;
  virtual void step_started(int index, int total, const std::string& text) = 0;
  virtual void step_output(std::string_view data) = 0;
  virtual void step_finished(int index, int total, bool cached, double seconds) = 0;
};

// A sandbox of template `t` with the configured defaults: the template's layers, env and
// kernels, its CPU and memory if it sets them (else `defaults`'), the default pids, disk and
// lifetime, and a /dev/shm of the default size but at most half the memory.
sandbox::SandboxSpec sandbox_spec(const TemplateStore& store, const TemplateInfo& t, const config::Sandbox& defaults);

// Starts a template's start command (if any) in the background of a fresh sandbox, as the
// template's user in its workdir, then runs its readiness check every 100 ms until it exits 0.
// Fails (naming the command and its last output) if the start command dies or `timeout` passes.
Result<> start_template_services(sandbox::Sandbox& sandbox, const TemplateInfo& t,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(60));

Result<TemplateInfo> build_template(sandbox::Engine& engine, TemplateStore& store, const BuildRequest& request,
                                    BuildProgress& progress);

}  // namespace brig::store
