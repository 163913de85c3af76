// The MCP the daemon hosts (/mcp, /mcp/code) calls the core in process: InProcessBackend is
// mcp::Backend over core::Service, with no HTTP between the tools and the sandboxes. Only
// code mode's api.request, whose contract is brig's REST API, goes through a router: the
// daemon's own, in memory (server/local_request.h), with the caller's key in the request.
//
// Authority: mcp_route checks the caller's key before a backend is made; the backend then acts
// with the daemon's authority for what that key may do. Today every valid key may do
// everything, so each operation only re-checks that the key is still valid (authorize() is
// where a per-key policy would go).
//
// Lifetime: McpHost is what the daemon lends to the MCP it hosts (its core service and its
// router); the daemon closes it before it stops serving. Code mode keeps work running past a
// request (a ready executor, kills off the answer's path), so backends are shared_ptrs and may
// outlive the daemon: after close() every operation fails with errc::unsupported ("the daemon
// is stopping"), and streams in progress (a command's output, a cell) end within 250 ms.
//
// Thread safety: McpHost and InProcessBackend are thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "core/service.h"
#include "mcp/backend.h"
#include "server/http.h"

namespace brig::server {

class McpHost {
 public:
  // `domain`: the daemon's (sandbox ports are <port>-<id>.<domain>).
  McpHost(core::Service& core, HttpServer::Router router, std::string domain)
      : core_(core), router_(std::move(router)), domain_(std::move(domain)) {}

  // Refuses new operations, ends streams in progress, and waits for the operations in progress
  // that hold the core (a create may be building a template). Idempotent.
  void close();
  bool closed() const { return closed_; }

 private:
  friend class InProcessBackend;
  // A hold on the core for one operation: while one is held, close() waits.
  class Lease {
   public:
    explicit Lease(McpHost* host) : host_(host) {}
    Lease(Lease&& o) noexcept : host_(std::exchange(o.host_, nullptr)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();

   private:
    McpHost* host_;
  };
  Result<Lease> enter();

  core::Service& core_;
  HttpServer::Router router_;
  const std::string domain_;
  std::atomic<bool> closed_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
};

class InProcessBackend final : public mcp::Backend {
 public:
  // `key`: the caller's API key, already checked; sent with code mode's API calls.
  InProcessBackend(std::shared_ptr<McpHost> host, std::string key) : host_(std::move(host)), key_(std::move(key)) {}

  Result<mcp::CreatedSandbox> create_sandbox(const mcp::NewSandbox& req) override;
  Result<std::vector<mcp::SandboxRow>> list_sandboxes(const std::map<std::string, std::string>& metadata) override;
  Result<> kill_sandbox(const std::string& id) override;
  Result<> set_timeout(const std::string& id, int64_t seconds) override;
  Result<> pause_sandbox(const std::string& id, bool keep_memory) override;
  Result<> resume_sandbox(const std::string& id, bool reboot) override;
  Result<mcp::SandboxDomain> sandbox_domain(const std::string& id) override;
  Result<mcp::ExecResult> exec(const mcp::Exec& req, const mcp::OutputFn& on_output, mcp::CancelToken* cancel) override;
  Result<> send_input(const std::string& sandbox_id, int pid, std::string_view data) override;
  Result<mcp::CellOutcome> run_cell(const mcp::Cell& cell, const std::function<void(std::string_view line)>& on_line,
                                    mcp::CancelToken* cancel) override;
  Result<std::vector<mcp::DirEntry>> list_dir(const std::string& sandbox_id, const std::string& path, int depth) override;
  Result<std::string> read_file(const std::string& sandbox_id, const std::string& path, size_t max_bytes) override;
  Result<> write_file(const std::string& sandbox_id, const std::string& path, std::string_view content) override;
  Result<mcp::Archive> download_archive(const std::string& sandbox_id, const std::string& path, const std::string& format,
                                        uint64_t max_bytes, uint32_t max_entries, size_t max_archive) override;
  Result<mcp::Unpacked> upload_archive(const std::string& sandbox_id, const std::string& path, const std::string& format,
                                       std::string_view archive) override;
  Result<mcp::ApiResponse> call_api(const std::string& method, const std::string& target, const std::string& body,
                                    size_t max_body) override;

 private:
  // A lease on the core for an operation of this key.
  Result<McpHost::Lease> authorize();
  // The running sandbox `id`, or mcp::sandbox_gone().
  Result<std::shared_ptr<core::Live>> live(const std::string& id, bool running = true);  // running: not paused

  std::shared_ptr<McpHost> host_;
  std::string key_;
};

}  // namespace brig::server
