#include "server/connect.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

namespace brig::server::connect {
namespace {

constexpr size_t kMaxMessage = 64 << 20;

Result<Codec> codec_of(const std::string& content_type, bool streaming) {
  std::string ct = content_type.substr(0, content_type.find(';'));
  if (streaming) {
    if (ct == "application/connect+json") return Codec::json;
    if (ct == "application/connect+proto") return Codec::proto;
  } else {
    if (ct == "application/json") return Codec::json;
    if (ct == "application/proto") return Codec::proto;
  }
  return Error::make(errc::invalid_argument, "unsupported content type '" + content_type + "'");
}

Result<> decode(Codec codec, std::string_view data, google::protobuf::Message* msg) {
  if (codec == Codec::proto) {
    if (!msg->ParseFromArray(data.data(), static_cast<int>(data.size())))
      return Error::make(errc::invalid_argument, "malformed protobuf message");
    return ok();
  }
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(std::string(data.empty() ? "{}" : data), msg, opts);
  if (!status.ok()) return Error::make(errc::invalid_argument, "malformed JSON message: " + std::string(status.message()));
  return ok();
}

std::string encode(Codec codec, const google::protobuf::Message& msg) {
  std::string out;
  if (codec == Codec::proto) {
    msg.SerializeToString(&out);
    return out;
  }
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(msg, &out, opts);
  return out.empty() ? "{}" : out;
}

std::string envelope(uint8_t flags, std::string_view payload) {
  std::string out(5, '\0');
  out[0] = static_cast<char>(flags);
  uint32_t n = static_cast<uint32_t>(payload.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  out.append(payload);
  return out;
}

}  // namespace

RpcError rpc_error(const Error& e, std::string_view what) { return {core::report(e, what), e.message()}; }

Result<Codec> decode_unary(const Request& req, google::protobuf::Message* msg) {
  BRIG_TRY_ASSIGN(codec, codec_of(req.header("content-type"), false));
  BRIG_TRY(decode(codec, req.body, msg));
  return codec;
}

Response unary_ok(Codec codec, const google::protobuf::Message& msg) {
  Response r;
  r.status = 200;
  r.headers.emplace_back("Content-Type", codec == Codec::json ? "application/json" : "application/proto");
  r.body = encode(codec, msg);
  return r;
}

Response unary_error(const RpcError& e) {
  nlohmann::json j = {{"code", core::connect_code(e.status)}, {"message", e.message}};
  return Response::json(core::http_status(e.status), j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Result<Codec> decode_stream_request(const Request& req, google::protobuf::Message* msg) {
  BRIG_TRY_ASSIGN(codec, codec_of(req.header("content-type"), true));
  const std::string& b = req.body;
  if (b.size() < 5) return Error::make(errc::invalid_argument, "missing request envelope");
  uint8_t flags = static_cast<uint8_t>(b[0]);
  if (flags & 1) return Error::make(errc::invalid_argument, "compressed messages are not supported");
  uint32_t n = (static_cast<uint32_t>(static_cast<uint8_t>(b[1])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(b[2])) << 16) |
               (static_cast<uint32_t>(static_cast<uint8_t>(b[3])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(b[4]));
  if (n > kMaxMessage || b.size() < 5 + static_cast<size_t>(n))
    return Error::make(errc::invalid_argument, "truncated request envelope");
  BRIG_TRY(decode(codec, std::string_view(b).substr(5, n), msg));
  return codec;
}

const char* stream_content_type(Codec codec) {
  return codec == Codec::json ? "application/connect+json" : "application/connect+proto";
}

std::string frame(Codec codec, const google::protobuf::Message& msg) { return envelope(0, encode(codec, msg)); }

std::string end_stream(const std::optional<RpcError>& error) {
  nlohmann::json j = nlohmann::json::object();
  if (error) j["error"] = {{"code", core::connect_code(error->status)}, {"message", error->message}};
  return envelope(2, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::optional<std::chrono::milliseconds> timeout_of(const Request& req) {
  std::string v = req.header("connect-timeout-ms");
  if (v.empty() || v.size() > 10 || v.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::chrono::milliseconds(std::stoll(v));
}

}  // namespace brig::server::connect
