// The event stream of one process to one client (Start and Connect): start, data..., end,
// EndStream. The process outlives the client going away.
#pragma once

#include "server/envd/rpc.h"

namespace brig::server::envd {

template <class Resp>
void stream_process(core::Service& core, std::shared_ptr<core::ProcessHub> hub, connect::Codec codec, const Request& req,
                    Stream& s, bool from_start);

process::ProcessEvent::EndEvent end_event(const core::ProcessEvent& ev);

}  // namespace brig::server::envd
