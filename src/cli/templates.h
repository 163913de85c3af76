// What the CLI verbs share about templates: finding one (building a missing built-in on first
// use) and showing build progress.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "sandbox/engine.h"
#include "store/builder.h"
#include "store/template_store.h"

namespace brig::cli {

// Build progress on stderr: on a terminal, one line per step with a live elapsed time
// (and the step's output when verbose); otherwise plain log lines.
class TerminalProgress final : public store::BuildProgress {
 public:
  explicit TerminalProgress(bool verbose);
  ~TerminalProgress() override;
  void step_started(int index, int total, const std::string& text) override;
  void step_output(std::string_view data) override;
  void step_finished(int index, int total, bool cached, double seconds) override;

 private:
  void redraw_locked();
  bool tty_;
  bool verbose_;
  std::mutex mu_;
  std::string header_;
  std::chrono::steady_clock::time_point started_;
  bool in_step_ = false;
  std::atomic<bool> stop_{false};
  std::thread ticker_;
};

// A template by name, "name:tag" or id. A missing built-in is built first (with progress).
Result<store::TemplateInfo> resolve_template(sandbox::Engine& engine, store::TemplateStore& store,
                                             const std::string& ref, store::BuildProgress& progress);

// Builds built-in `name` (and, first, the built-ins it extends).
Result<store::TemplateInfo> build_builtin(sandbox::Engine& engine, store::TemplateStore& store, const std::string& name,
                                          store::BuildProgress& progress);

}  // namespace brig::cli
