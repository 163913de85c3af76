// The Connect protocol (connectrpc.com/docs/protocol) as envd speaks it, over our HTTP layer:
// unary calls (application/json or application/proto) and server-streaming calls
// (application/connect+json or application/connect+proto, 5-byte envelopes, a mandatory
// EndStream frame, errors in the EndStream frame). Messages are protobuf; the JSON codec is
// protobuf's own JSON mapping (lowerCamelCase names, enum names, base64 bytes).
#pragma once

#include <google/protobuf/message.h>

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "core/status.h"
#include "server/http.h"

namespace brig::server::connect {

enum class Codec { json, proto };

// A Connect error: a status (its code and HTTP status come from core/status.h) and a message.
struct RpcError {
  core::Status status;
  std::string message;
};
// `e` as a Connect error, through core's one table (a server fault is logged as `what`).
RpcError rpc_error(const Error& e, std::string_view what);

// Unary: decode the request body into `msg` by the request's content type.
Result<Codec> decode_unary(const Request& req, google::protobuf::Message* msg);
Response unary_ok(Codec codec, const google::protobuf::Message& msg);
Response unary_error(const RpcError& e);

// Streaming: the request body is one envelope.
Result<Codec> decode_stream_request(const Request& req, google::protobuf::Message* msg);
const char* stream_content_type(Codec codec);
std::string frame(Codec codec, const google::protobuf::Message& msg);
// The EndStream frame: {} or {"error":{code,message}} (always JSON, by the protocol).
std::string end_stream(const std::optional<RpcError>& error);

// Connect-Timeout-Ms, if present and valid.
std::optional<std::chrono::milliseconds> timeout_of(const Request& req);

}  // namespace brig::server::connect
