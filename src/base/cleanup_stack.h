// CleanupStack: the undo steps of a multi-step provisioning, run LIFO exactly once.
// Each step pushes its undo right after it succeeds; failure paths and normal teardown share
// the same stack. Errors from undo steps are collected, not thrown.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/result.h"

namespace brig {

class CleanupStack {
 public:
  CleanupStack() = default;
  CleanupStack(CleanupStack&&) = default;
  CleanupStack& operator=(CleanupStack&&) = default;
  CleanupStack(const CleanupStack&) = delete;
  CleanupStack& operator=(const CleanupStack&) = delete;
  ~CleanupStack() { (void)run(); }

  void push(std::string what, std::function<Result<>()> undo) {
    steps_.push_back({std::move(what), std::move(undo)});
  }
  // Forgets every step (ownership moved elsewhere).
  void dismiss() { steps_.clear(); }
  bool empty() const { return steps_.empty(); }

  // Runs every step LIFO; returns the messages of the steps that failed.
  std::vector<std::string> run() {
    std::vector<std::string> errors;
    while (!steps_.empty()) {
      auto step = std::move(steps_.back());
      steps_.pop_back();
      if (auto r = step.undo(); !r) errors.push_back(step.what + ": " + r.error().message());
    }
    return errors;
  }

 private:
  struct Step {
    std::string what;
    std::function<Result<>()> undo;
  };
  std::vector<Step> steps_;
};

}  // namespace brig
