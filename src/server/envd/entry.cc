// What the RPC files share: EntryInfo in envd's shape, selectors, stream errors.
#include "server/envd/rpc.h"

namespace brig::server::envd {
namespace {

std::string permissions_string(const sandbox::EntryInfo& e) {
  std::string s(10, '-');
  s[0] = e.type == sandbox::FileType::dir ? 'd' : e.type == sandbox::FileType::symlink ? 'L' : '-';
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (e.mode & (0400u >> i)) s[static_cast<size_t>(i + 1)] = rwx[i];
  return s;
}

std::string owner_name(uint32_t id) { return id == 0 ? "root" : id == 1000 ? "user" : std::to_string(id); }

}  // namespace

// As upstream envd: a symlink is described by what it points to (type and permission bits of
// its target, the target's absolute path; the link's own path when it dangles), never as a
// type of its own, which the Python SDK's enum lacks. Its permissions string stays "L…".
void to_pb(const sandbox::EntryInfo& e, filesystem::EntryInfo* out) {
  out->set_name(e.name);
  out->set_path(e.path);
  const bool link = e.type == sandbox::FileType::symlink;
  switch (link ? e.target_type : e.type) {
    case sandbox::FileType::file: out->set_type(filesystem::FILE_TYPE_FILE); break;
    case sandbox::FileType::dir: out->set_type(filesystem::FILE_TYPE_DIRECTORY); break;
    default: out->set_type(filesystem::FILE_TYPE_UNSPECIFIED);
  }
  out->set_size(static_cast<int64_t>(e.size));
  out->set_mode((link ? e.target_mode : e.mode) & 0777);
  out->set_permissions(permissions_string(e));
  out->set_owner(owner_name(e.uid));
  out->set_group(owner_name(e.gid));
  out->mutable_modified_time()->set_seconds(e.mtime_ns / 1'000'000'000);
  out->mutable_modified_time()->set_nanos(static_cast<int32_t>(e.mtime_ns % 1'000'000'000));
  if (link) out->set_symlink_target(e.resolved_target.empty() ? e.path : e.resolved_target);
  for (auto& [k, v] : e.metadata) (*out->mutable_metadata())[k] = v;
}

core::ProcessSelector selector(const process::ProcessSelector& sel) {
  core::ProcessSelector out;
  if (sel.selector_case() == process::ProcessSelector::kPid) out.pid = static_cast<int>(sel.pid());
  else if (sel.selector_case() == process::ProcessSelector::kTag) out.tag = sel.tag();
  return out;
}

void stream_error(Stream& s, connect::Codec codec, const connect::RpcError& e) {
  s.begin(200, {{"Content-Type", connect::stream_content_type(codec)}});
  s.write(connect::end_stream(e));
}

Pull stream_error(connect::Codec codec, const connect::RpcError& e) {
  Pull p;
  p.head.status = 200;
  p.head.headers = {{"Content-Type", connect::stream_content_type(codec)}};
  p.head.body = connect::end_stream(e);
  return p;
}

}  // namespace brig::server::envd
