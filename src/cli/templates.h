// Build progress for the CLI verbs that build templates.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "sandbox/engine.h"
#include "store/builder.h"
#include "store/builtin.h"
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

}  // namespace brig::cli
