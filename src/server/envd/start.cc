// process.Process/Start: spawns a process and streams its events from its first byte.
#include "server/envd/process_stream.h"

namespace brig::server::envd {

Route start(const Call& call) {
  Route r;
  r.pull = [call](Request& req) -> Pull {
    process::StartRequest in;
    auto codec = connect::decode_stream_request(req, &in);
    if (!codec) return stream_error(connect::Codec::json, {core::Status::invalid_argument, codec.error().message()});
    core::StartProcess cmd;
    auto& spec = cmd.spec;
    spec.cmd = in.process().cmd();
    spec.args.assign(in.process().args().begin(), in.process().args().end());
    for (auto& [k, v] : in.process().envs()) spec.env[k] = v;
    if (in.process().has_cwd()) spec.cwd = in.process().cwd();
    spec.user = call.user;
    spec.stdin_pipe = !in.has_stdin() || in.stdin();
    if (in.has_pty()) {
      spec.pty = true;
      spec.rows = static_cast<uint16_t>(in.pty().size().rows() ? in.pty().size().rows() : 24);
      spec.cols = static_cast<uint16_t>(in.pty().size().cols() ? in.pty().size().cols() : 80);
      spec.stdin_pipe = false;
    }
    if (in.has_tag()) spec.tag = in.tag();
    cmd.timeout = connect::timeout_of(req);
    auto hub = call.core.start_process(*call.live, std::move(cmd));
    if (!hub) return stream_error(*codec, connect::rpc_error(hub.error(), "process.Start"));
    return stream_process<process::StartResponse>(call.core, *hub, *codec, req, /*from_start=*/true);
  };
  return r;
}

}  // namespace brig::server::envd
