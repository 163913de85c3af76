// process.Process/Connect: streams a running process's events from now on.
#include "server/envd/process_stream.h"

namespace brig::server::envd {

Route connect_process(const Call& call) {
  Route r;
  r.pull = [call](Request& req) -> Pull {
    process::ConnectRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(connect::Codec::json, {core::Status::invalid_argument, codec.error().message()});
    auto hub = call.core.find_process(*call.live, selector(in.process()));
    if (!hub) return stream_error(*codec, connect::rpc_error(hub.error(), "process.Connect"));
    return stream_process<process::ConnectResponse>(call.core, *hub, *codec, req, /*from_start=*/false);
  };
  return r;
}

}  // namespace brig::server::envd
