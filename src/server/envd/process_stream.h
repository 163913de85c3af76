// The event stream of one process to one client (Start and Connect): start, data..., end,
// EndStream, with keep-alive pings while the process is quiet. A pull stream: the loop writes
// it as output comes, no thread waits for the process. The process outlives the client going
// away.
#pragma once

#include "server/envd/rpc.h"

namespace brig::server::envd {

template <class Resp>
Pull stream_process(core::Service& core, std::shared_ptr<core::ProcessHub> hub, connect::Codec codec, const Request& req,
                    bool from_start);

process::ProcessEvent::EndEvent end_event(const core::ProcessEvent& ev);

}  // namespace brig::server::envd
