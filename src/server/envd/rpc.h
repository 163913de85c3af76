// What envd's handlers share: the call they serve (the sandbox, already authorised, and the
// user it acts as), a unary-RPC adapter, and the EntryInfo mapping. One file per RPC includes
// this (e2b's envd is laid out the same way); router.cc picks the handler by path.
#pragma once

#include <functional>
#include <memory>

#include "core/service.h"
#include "core/status.h"
#include "envd/filesystem.pb.h"
#include "envd/process.pb.h"
#include "server/connect.h"
#include "server/http.h"

namespace brig::server::envd {

struct Call {
  core::Service& core;
  std::shared_ptr<core::Live> live;
  sandbox::User user;
};

// A unary Connect RPC: decode, run `fn`, encode the result or the error (through core's table;
// a server fault is logged once as `what`).
template <class Req, class Resp>
Route unary(const char* what, std::function<Result<Resp>(const Req&)> fn) {
  Route r;
  r.respond = [what, fn = std::move(fn)](Request& req) {
    Req in;
    auto codec = connect::decode_unary(req, &in);
    if (!codec) return connect::unary_error({core::Status::invalid_argument, codec.error().message()});
    auto out = fn(in);
    if (!out) return connect::unary_error(connect::rpc_error(out.error(), what));
    return connect::unary_ok(*codec, *out);
  };
  return r;
}

// The trailers-only error of a stream (HTTP 200, EndStream with the error): written on a
// Stream, or as the whole answer of a pull route.
void stream_error(Stream& s, connect::Codec codec, const connect::RpcError& e);
Pull stream_error(connect::Codec codec, const connect::RpcError& e);

// A sandbox entry in envd's shape (symlinks described by their target, as upstream).
void to_pb(const sandbox::EntryInfo& e, filesystem::EntryInfo* out);
core::ProcessSelector selector(const process::ProcessSelector& sel);

// process.Process
Route start(const Call& call);
Route connect_process(const Call& call);
Route list(const Call& call);
Route send_input(const Call& call);
Route stream_input(const Call& call);
Route close_stdin(const Call& call);
Route send_signal(const Call& call);
Route update(const Call& call);
// filesystem.Filesystem
Route stat(const Call& call);
Route list_dir(const Call& call);
Route make_dir(const Call& call);
Route move(const Call& call);
Route remove(const Call& call);
Route watch_dir(const Call& call);
Route create_watcher(const Call& call);
Route get_watcher_events(const Call& call);
Route remove_watcher(const Call& call);
// /files and /files/archive (plain HTTP)
Route files(const Call& call, const Request& head);
Route archive(const Call& call, const Request& head);

}  // namespace brig::server::envd
