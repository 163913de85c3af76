// A sandbox watch operation as envd's EventType.
#pragma once

#include "envd/filesystem.pb.h"
#include "sandbox/sandbox.h"

namespace brig::server::envd {

inline filesystem::EventType event_type(sandbox::WatchOp op) {
  switch (op) {
    case sandbox::WatchOp::create: return filesystem::EVENT_TYPE_CREATE;
    case sandbox::WatchOp::write: return filesystem::EVENT_TYPE_WRITE;
    case sandbox::WatchOp::remove: return filesystem::EVENT_TYPE_REMOVE;
    case sandbox::WatchOp::rename: return filesystem::EVENT_TYPE_RENAME;
    case sandbox::WatchOp::chmod: return filesystem::EVENT_TYPE_CHMOD;
  }
  return filesystem::EVENT_TYPE_UNSPECIFIED;
}

}  // namespace brig::server::envd
