#include "cli/templates.h"

#include <unistd.h>

#include <cstdio>


namespace brig::cli {

TerminalProgress::TerminalProgress(bool verbose) : tty_(::isatty(2)), verbose_(verbose) {
  if (tty_ && !verbose_)
    ticker_ = std::thread([this] {
      while (!stop_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        std::lock_guard lock(mu_);
        if (in_step_) redraw_locked();
      }
    });
}

TerminalProgress::~TerminalProgress() {
  stop_ = true;
  if (ticker_.joinable()) ticker_.join();
}

void TerminalProgress::redraw_locked() {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  std::fprintf(stderr, "\r\033[K%s  %.1fs", header_.c_str(), secs);
  std::fflush(stderr);
}

void TerminalProgress::step_started(int index, int total, const std::string& text) {
  std::lock_guard lock(mu_);
  std::string shown = text;
  for (auto& c : shown)
    if (c == '\n' || c == '\t') c = ' ';
  const size_t width = 72;
  if (shown.size() > width) shown = shown.substr(0, width - 3) + "...";
  header_ = "[" + std::to_string(index) + "/" + std::to_string(total) + "] " + shown;
  started_ = std::chrono::steady_clock::now();
  in_step_ = true;
  if (tty_ && !verbose_) redraw_locked();
  else std::fprintf(stderr, "%s\n", header_.c_str());
}

void TerminalProgress::step_output(std::string_view data) {
  if (!verbose_) return;
  std::lock_guard lock(mu_);
  std::fwrite(data.data(), 1, data.size(), stderr);
}

void TerminalProgress::step_finished(int index, int total, bool cached, double seconds) {
  std::lock_guard lock(mu_);
  in_step_ = false;
  char tail[64];
  std::snprintf(tail, sizeof tail, cached ? "cached" : "done in %.1fs", seconds);
  if (tty_ && !verbose_) std::fprintf(stderr, "\r\033[K%s  %s\n", header_.c_str(), tail);
  else std::fprintf(stderr, "[%d/%d] %s\n", index, total, tail);
  std::fflush(stderr);
}

}  // namespace brig::cli
