// process.Process/SendInput, CloseStdin and StreamInput: a process's stdin (or PTY).
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route send_input(const Call& call) {
  return unary<process::SendInputRequest, process::SendInputResponse>(
      "process.SendInput", [call](const process::SendInputRequest& in) -> Result<process::SendInputResponse> {
        const auto& input = in.input();
        BRIG_TRY(call.core.send_input(*call.live, selector(in.process()),
                                      input.input_case() == process::ProcessInput::kPty ? input.pty() : input.stdin()));
        return process::SendInputResponse{};
      });
}

Route close_stdin(const Call& call) {
  return unary<process::CloseStdinRequest, process::CloseStdinResponse>(
      "process.CloseStdin", [call](const process::CloseStdinRequest& in) -> Result<process::CloseStdinResponse> {
        BRIG_TRY(call.core.close_stdin(*call.live, selector(in.process())));
        return process::CloseStdinResponse{};
      });
}

Route stream_input(const Call&) {
  Route r;  // client streaming needs HTTP/2 or bidi; over HTTP/1.1 answer honestly
  r.respond = [](Request&) {
    return connect::unary_error({core::Status::unimplemented, "StreamInput needs client streaming; use SendInput"});
  };
  return r;
}

}  // namespace brig::server::envd
