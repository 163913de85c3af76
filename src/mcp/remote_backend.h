// mcp::Backend over brig's HTTP API (client::ApiClient): `brig mcp` on stdio is a client of a
// daemon that may be on another host, acting as the key it was given (BRIG_API_KEY). Sandbox
// operations go to the daemon's envd data plane with the sandbox's access token, cells to its
// code interpreter (port 49999), exactly as an E2B SDK would.
//
// Thread safety: as mcp::Backend (every call opens its own connection).
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "client/api_client.h"
#include "mcp/backend.h"

namespace brig::mcp {

class RemoteBackend final : public Backend {
 public:
  explicit RemoteBackend(client::ApiClient api) : api_(std::move(api)) {}

  Result<CreatedSandbox> create_sandbox(const NewSandbox& req) override;
  Result<std::vector<SandboxRow>> list_sandboxes(const std::map<std::string, std::string>& metadata) override;
  Result<> kill_sandbox(const std::string& id) override;
  Result<> set_timeout(const std::string& id, int64_t seconds) override;
  Result<> pause_sandbox(const std::string& id, bool keep_memory) override;
  Result<> resume_sandbox(const std::string& id, bool reboot) override;
  Result<SandboxDomain> sandbox_domain(const std::string& id) override;
  Result<ExecResult> exec(const Exec& req, const OutputFn& on_output, CancelToken* cancel) override;
  Result<> send_input(const std::string& sandbox_id, int pid, std::string_view data) override;
  Result<CellOutcome> run_cell(const Cell& cell, const std::function<void(std::string_view line)>& on_line,
                               CancelToken* cancel) override;
  Result<std::vector<DirEntry>> list_dir(const std::string& sandbox_id, const std::string& path, int depth) override;
  Result<std::string> read_file(const std::string& sandbox_id, const std::string& path, size_t max_bytes) override;
  Result<> write_file(const std::string& sandbox_id, const std::string& path, std::string_view content) override;
  Result<Archive> download_archive(const std::string& sandbox_id, const std::string& path, const std::string& format,
                                   uint64_t max_bytes, uint32_t max_entries, size_t max_archive) override;
  Result<Unpacked> upload_archive(const std::string& sandbox_id, const std::string& path, const std::string& format,
                                  std::string_view archive) override;
  Result<ApiResponse> call_api(const std::string& method, const std::string& target, const std::string& body,
                               size_t max_body) override;

 private:
  // Headers that reach sandbox `id`'s envd; sandbox_gone() when the daemon does not know it.
  Result<std::map<std::string, std::string>> envd(const std::string& id);

  client::ApiClient api_;
  std::mutex envd_mu_;
  std::map<std::string, std::map<std::string, std::string>> envd_cache_;  // send_input's, by sandbox (≤ 64)
};

}  // namespace brig::mcp
