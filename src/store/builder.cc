#include "store/builder.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/subprocess.h"
#include "base/util.h"
#include "store/dockerfile.h"

namespace brig::store {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kBuildDir = "/run/brig-build";  // build-time only; never in a layer
constexpr const char* kDebianRecipe = "brig-debian-v2";  // bump when the recipe below changes

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // does not follow symlinks
}

// Files written in a build sandbox belong to its host uid range; a layer stores them as the
// sandbox saw them (uid - base), so any sandbox's idmapped mount shows the right owner.
// chown clears set-id bits, so the mode is restored afterwards.
Result<> shift_ownership(int dirfd, uint32_t base, int level = 0) {
  if (level > 512) return Error::make(errc::limit_exceeded, "layer nesting too deep");
  DIR* d = ::fdopendir(dirfd);
  if (!d) {
    ::close(dirfd);
    return Error::from_errno(errno, "fdopendir");
  }
  Result<> result = ok();
  while (auto* e = ::readdir(d)) {
    if (!std::strcmp(e->d_name, ".") || !std::strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    auto shift = [&](uint32_t id) { return id >= base && id - base < 65536 ? id - base : id; };
    uid_t uid = shift(st.st_uid);
    gid_t gid = shift(st.st_gid);
    if (uid != st.st_uid || gid != st.st_gid) {
      if (::fchownat(::dirfd(d), e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
        result = Error::from_errno(errno, std::string("chown ") + e->d_name);
        break;
      }
      if (!S_ISLNK(st.st_mode) && (st.st_mode & 06000)) ::fchmodat(::dirfd(d), e->d_name, st.st_mode & 07777, 0);
    }
    if (S_ISDIR(st.st_mode)) {
      int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0)
        if (auto r = shift_ownership(sub, base, level + 1); !r) {
          result = r;
          break;
        }
    }
  }
  ::closedir(d);
  return result;
}

// The layer for FROM debian:<suite>: minbase plus a `user` (uid 1000), without docs, man
// pages and locales (the dpkg and apt settings stay in the image, so later RUN steps follow them).
Result<std::string> debian_layer(TemplateStore& store, const std::string& suite, BuildProgress& progress) {
  const std::string key = sha256_hex(std::string(kDebianRecipe) + "|" + suite);
  if (store.has_layer(key)) return key;
  BRIG_TRY_ASSIGN(dir, store.make_build_dir());
  std::string tree = dir + "/tree";
  const std::string mirror = "http://deb.debian.org/debian";
  std::vector<std::string> argv = {
      "mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
      // Merged /usr set up directly: the usrmerge package would drag perl (~50 MB) in.
      "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
      "--include=ca-certificates",
      "--aptopt=APT::Install-Recommends \"false\"",
      "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
      "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
      "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
      "--customize-hook=chroot \"$1\" useradd --create-home --uid 1000 --shell /bin/bash user",
      "--customize-hook=printf '127.0.0.1 localhost\\n::1 localhost ip6-localhost ip6-loopback\\n' > \"$1/etc/hosts\"",
      "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin",
      suite, tree,
      "deb " + mirror + " " + suite + " main",
      "deb " + mirror + " " + suite + "-updates main",
      "deb http://deb.debian.org/debian-security " + suite + "-security main"};
  if (auto r = run_program(argv, [&](std::string_view out) { progress.step_output(out); }); !r) {
    remove_tree(dir);
    return r.error().wrap("FROM debian:" + suite);
  }
  auto committed = store.commit_layer(key, tree);
  remove_tree(dir);
  if (!committed) return committed.error();
  return key;
}

struct CopyFile {
  std::string rel;      // path below the destination
  std::string host;     // source path on the host
  uint32_t mode = 0644;
};

// Lists the files a COPY takes from the build context, without leaving it.
Result<std::vector<CopyFile>> collect_copy(const std::string& context, const std::vector<std::string>& srcs,
                                           bool dest_is_dir, const config::Build& limits) {
  namespace fs = std::filesystem;
  std::vector<CopyFile> files;
  uint64_t total = 0;
  std::error_code ec;
  fs::path root = fs::canonical(context, ec);
  if (ec) return Error::make(errc::not_found, "build context '" + context + "' not found");
  auto add = [&](const fs::path& host, const std::string& rel) -> Result<> {
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) return Error::from_errno(errno, "stat " + host.string());
    if (!S_ISREG(st.st_mode)) return ok();  // symlinks and special files are not copied
    total += static_cast<uint64_t>(st.st_size);
    if (total > limits.copy_bytes || files.size() >= limits.copy_files)
      return Error::make(errc::limit_exceeded, "COPY sources exceed " + format_size(limits.copy_bytes) + " or " +
                                                   std::to_string(limits.copy_files) +
                                                   " files (build.copy_bytes, build.copy_files)");
    files.push_back({rel, host.string(), st.st_mode & 07777});
    return ok();
  };
  for (auto& src : srcs) {
    fs::path p = fs::weakly_canonical(root / src, ec);
    auto rel_to_root = p.lexically_relative(root).string();
    if (ec || rel_to_root.starts_with("..")) return Error::make(errc::invalid_argument, "COPY source '" + src + "' leaves the context");
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return Error::make(errc::not_found, "COPY source '" + src + "' not found in the context");
    if (S_ISDIR(st.st_mode)) {
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::none, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && !it->is_symlink(ec)) BRIG_TRY(add(it->path(), it->path().lexically_relative(p).string()));
    } else {
      BRIG_TRY(add(p, dest_is_dir ? p.filename().string() : ""));
    }
  }
  return files;
}

Result<std::string> hash_copy(const std::vector<CopyFile>& files, uint64_t max_bytes) {
  std::string acc;
  for (auto& f : files) {
    BRIG_TRY_ASSIGN(content, read_small_file(f.host, max_bytes));
    acc += f.rel + '\0' + std::to_string(f.mode) + '\0' + sha256_hex(content) + '\n';
  }
  return sha256_hex(acc);
}

std::string join_path(const std::string& base, const std::string& rel) {
  if (rel.empty()) return base;
  if (base.ends_with("/")) return base + rel;
  return base + "/" + rel;
}

class Builder {
 public:
  Builder(sandbox::Engine& engine, TemplateStore& store, const BuildRequest& req, BuildProgress& progress)
      : engine_(engine), store_(store), build_(store.build_config()), req_(req), progress_(progress) {}

  Result<TemplateInfo> build() {
    BRIG_TRY_ASSIGN(df, parse_dockerfile(req_.definition, req_.definition_name));
    total_ = static_cast<int>(df.steps.size());
    for (int i = 0; i < total_; ++i) {
      const auto& ins = df.steps[static_cast<size_t>(i)];
      auto started = Clock::now();
      progress_.step_started(i + 1, total_, ins.text);
      cached_ = false;
      if (auto r = apply(ins); !r)
        return r.error().wrap(req_.definition_name + ":" + std::to_string(ins.line) + " step " + std::to_string(i + 1) +
                              "/" + std::to_string(total_));
      progress_.step_finished(i + 1, total_, cached_, seconds_since(started));
    }
    TemplateInfo info;
    info.name = req_.name;
    info.tag = req_.tag;
    info.id = layers_.front().substr(0, 20);
    info.layers = layers_;
    info.config = config_;
    info.config.env = env_;
    info.config.start_cmd = df.start_cmd;
    info.config.ready_cmd = df.ready_cmd;
    info.config.kernels = df.kernels;
    info.config.definition_sha = sha256_hex(req_.definition);
    if (df.cpus) info.config.cpus = df.cpus;
    if (df.memory_bytes) info.config.memory_bytes = df.memory_bytes;
    if (df.disk_bytes) info.config.disk_bytes = df.disk_bytes;
    info.created_ms = now_unix_ms();
    for (auto& l : layers_) info.size_bytes += store_.layer_size(l);
    info.source = req_.definition_name;
    BRIG_TRY(store_.put(info));
    return info;
  }

 private:
  std::map<std::string, std::string> vars() const {
    auto v = args_;
    for (auto& [k, val] : env_) v[k] = val;
    return v;
  }
  void chain(const std::string& what) { chain_ = sha256_hex(chain_ + "\n" + what); }

  Result<> apply(const Instruction& ins) {
    switch (ins.op) {
      case Op::from: return from(ins.args[0]);
      case Op::arg:
        for (auto& [k, def] : ins.pairs) {
          auto it = req_.build_args.find(k);
          args_[k] = it != req_.build_args.end() ? it->second : expand_vars(def, vars());
          chain("ARG " + k + "=" + args_[k]);
        }
        cached_ = true;
        return ok();
      case Op::env:
        for (auto& [k, v] : ins.pairs) {
          env_[k] = expand_vars(v, vars());
          chain("ENV " + k + "=" + env_[k]);
        }
        cached_ = true;
        return ok();
      case Op::label:
        for (auto& [k, v] : ins.pairs) config_.labels[k] = expand_vars(v, vars());
        cached_ = true;
        return ok();
      case Op::user:
        build_user_ = ins.args[0] == "root" ? sandbox::User::root : sandbox::User::user;
        config_.user = ins.args[0];
        chain("USER " + ins.args[0]);
        cached_ = true;
        return ok();
      case Op::workdir: {
        std::string dir = expand_vars(ins.args[0], vars());
        workdir_ = dir.starts_with("/") ? dir : join_path(workdir_, dir);
        config_.workdir = workdir_;
        std::string target = workdir_;
        return layer_step("WORKDIR " + workdir_, [target](sandbox::Sandbox& sb) -> Result<> {
          BRIG_TRY(sb.make_dir(target, sandbox::User::root));
          return ok();
        });
      }
      case Op::run: return run(ins);
      case Op::copy: return copy(ins);
    }
    return Error::make(errc::invalid_argument, "unknown instruction");
  }

  Result<> from(const std::string& image) {
    static const std::map<std::string, std::string> kDebian = {
        {"debian:bookworm", "bookworm"}, {"debian:bookworm-slim", "bookworm"}, {"debian:12", "bookworm"},
        {"debian:12-slim", "bookworm"}, {"debian", "bookworm"}, {"debian:latest", "bookworm"}, {"debian:stable", "bookworm"}};
    if (auto it = kDebian.find(image); it != kDebian.end()) {
      if (store_.has_layer(sha256_hex(std::string(kDebianRecipe) + "|" + it->second))) cached_ = true;
      BRIG_TRY_ASSIGN(key, debian_layer(store_, it->second, progress_));
      layers_ = {key};
      chain_ = key;
      return ok();
    }
    if (image.find(':') != std::string::npos || image.find('/') != std::string::npos) {
      if (!req_.resolve_parent || image.starts_with("debian") || image.find('/') != std::string::npos)
        return Error::make(errc::unsupported, "FROM " + image +
                                                  ": only debian:bookworm[-slim] and brig templates can be built here");
    }
    if (!req_.resolve_parent) return Error::make(errc::not_found, "FROM " + image + ": unknown template");
    auto parent = req_.resolve_parent(image);
    if (!parent) {
      if (parent.error().is(errc::not_found))
        return Error::make(errc::not_found, "FROM " + image +
                                                ": no such template (only debian:bookworm[-slim] and brig templates can be built)");
      return parent.error();
    }
    layers_ = parent->layers;
    chain_ = parent->layers.front();
    env_ = parent->config.env;
    config_ = parent->config;
    config_.env.clear();
    cached_ = true;
    return ok();
  }

  Result<> run(const Instruction& ins) {
    sandbox::ProcessSpec ps;
    if (ins.exec_form) {
      ps.cmd = ins.args[0];
      ps.args.assign(ins.args.begin() + 1, ins.args.end());
    } else {
      ps.cmd = "/bin/sh";
      ps.args = {"-c", ins.args[0]};
    }
    ps.user = build_user_;
    ps.cwd = workdir_;
    ps.env = vars();
    std::string what = "RUN " + nlohmann_like(ins.args) + "\nuser=" + sandbox::user_name(build_user_) + "\ncwd=" + workdir_;
    for (auto& [k, v] : ps.env) what += "\n" + k + "=" + v;
    return layer_step(what, [this, ps](sandbox::Sandbox& sb) -> Result<> {
      sandbox::ProcessSpec step = ps;
      BRIG_TRY(trust_host_cas(sb, step));
      sandbox::RunOptions opts;
      opts.timeout = std::chrono::seconds(build_.step_timeout_s);
      opts.output_limit = 1ull << 40;  // everything is shown; nothing is kept
      std::string tail;
      auto keep = [&](std::string_view d) {
        progress_.step_output(d);
        tail.append(d);
        if (tail.size() > 4096) tail.erase(0, tail.size() - 4096);
      };
      opts.on_stdout = keep;
      opts.on_stderr = keep;
      BRIG_TRY_ASSIGN(r, sb.run(step, opts));
      if (r.timed_out)
        return Error::make(errc::timed_out, "the command ran for more than " + std::to_string(build_.step_timeout_s) +
                                                " s (build.step_timeout_s)");
      if (r.shell_code() != 0)
        return Error::make(errc::invalid_argument, "the command failed with exit code " + std::to_string(r.shell_code()) +
                                                       (r.oom_killed ? " (out of memory)" : "") + "; last output:\n" + tail);
      return ok();
    });
  }

  // Build steps download over TLS (npm, pip, curl). Hosts behind a TLS-inspecting proxy trust
  // its CA only in their own bundle, so the host's bundle is lent to each RUN step under
  // kBuildDir and named by the usual variables. It is removed before the layer is committed and
  // is not part of the cache key: it changes where a step may connect, not what it builds.
  Result<> trust_host_cas(sandbox::Sandbox& sb, sandbox::ProcessSpec& step) {
    if (build_.ca_file.empty()) return ok();
    auto bundle = read_small_file(build_.ca_file, 16 << 20);
    if (!bundle) return ok();  // no host bundle: the template's own CAs only
    const std::string in_sandbox = std::string(kBuildDir) + "/ca-certificates.crt";
    BRIG_TRY(sb.write_file(in_sandbox, *bundle, sandbox::User::root, 0644));
    for (const char* var : {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                            "GIT_SSL_CAINFO", "npm_config_cafile", "PIP_CERT", "DENO_CERT"})
      if (!step.env.count(var)) step.env[var] = in_sandbox;
    return ok();
  }

  static std::string nlohmann_like(const std::vector<std::string>& args) {
    std::string out;
    for (auto& a : args) out += a + '\0';
    return out;
  }

  Result<> copy(const Instruction& ins) {
    if (req_.context_dir.empty()) return Error::make(errc::invalid_argument, "COPY needs a build context directory");
    std::vector<std::string> srcs(ins.args.begin(), ins.args.end() - 1);
    std::string dest = expand_vars(ins.args.back(), vars());
    if (!dest.starts_with("/")) dest = join_path(workdir_, dest);
    bool dest_is_dir = ins.args.back().ends_with("/") || srcs.size() > 1;
    for (auto& s : srcs) {
      struct stat st;
      if (::stat((req_.context_dir + "/" + s).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) dest_is_dir = true;
    }
    BRIG_TRY_ASSIGN(files, collect_copy(req_.context_dir, srcs, dest_is_dir, build_));
    BRIG_TRY_ASSIGN(digest, hash_copy(files, build_.copy_bytes));
    std::string what = "COPY " + dest + " " + digest + " chmod=" + std::to_string(ins.chmod) + " chown=" + ins.chown;
    uint32_t chmod = ins.chmod;
    std::string chown = ins.chown;
    const uint64_t max_bytes = build_.copy_bytes;
    return layer_step(what, [files, dest, chmod, chown, max_bytes](sandbox::Sandbox& sb) -> Result<> {
      for (auto& f : files) {
        BRIG_TRY_ASSIGN(content, read_small_file(f.host, max_bytes));
        std::string target = join_path(dest, f.rel);
        BRIG_TRY(sb.write_file(target, content, sandbox::User::root, chmod ? chmod : f.mode));
      }
      if (chown == "user") {
        sandbox::ProcessSpec ps;
        ps.cmd = "chown";
        ps.args = {"-R", "1000:1000"};
        for (auto& f : files) ps.args.push_back(join_path(dest, f.rel));
        ps.user = sandbox::User::root;
        BRIG_TRY_ASSIGN(r, sb.run(ps, {}));
        if (r.shell_code() != 0) return Error::make(errc::invalid_argument, "chown failed: " + r.err);
      }
      return ok();
    });
  }

  // Runs `body` in a build sandbox over the current layers; its writes become a new layer.
  Result<> layer_step(const std::string& what, const std::function<Result<>(sandbox::Sandbox&)>& body) {
    chain(what);
    const std::string key = chain_;
    if (!req_.no_cache && store_.has_layer(key)) {
      layers_.insert(layers_.begin(), key);
      cached_ = true;
      return ok();
    }
    if (layers_.size() >= build_.max_layers)
      return Error::make(errc::limit_exceeded,
                         "too many layers (" + std::to_string(build_.max_layers) + ", build.max_layers); merge RUN steps");
    BRIG_TRY_ASSIGN(dir, store_.make_build_dir());
    sandbox::SandboxSpec spec;
    spec.layers = store_.layer_paths(TemplateInfo{.layers = layers_});
    spec.template_name = "(build " + req_.name + ")";
    spec.upper_dir = dir;
    spec.host_network = true;
    spec.memory_bytes = uint64_t{build_.memory_mib} << 20;
    spec.cpu_millis = static_cast<uint32_t>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)) * 1000);
    spec.pids = build_.pids;
    // Outlives its step's timeout, so the step's own timeout is what a slow step meets.
    spec.lifetime = std::chrono::seconds(std::min(2 * uint64_t{build_.step_timeout_s}, engine_.max_lifetime_s()));
    auto sb = engine_.create(spec);
    if (!sb) {
      remove_tree(dir);
      return sb.error().wrap("build sandbox");
    }
    auto result = body(**sb);
    std::string id = (*sb)->id();
    sb->reset();
    auto killed = engine_.kill(id);
    if (!result || !killed) {
      remove_tree(dir);
      return result ? killed : result;
    }
    const std::string upper = dir + "/upper";
    remove_tree(upper + kBuildDir);
    struct stat st;
    if (::stat(upper.c_str(), &st) != 0) {
      remove_tree(dir);
      return Error::from_errno(errno, "stat " + upper);
    }
    int fd = ::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    Result<> shifted = fd >= 0 ? shift_ownership(fd, st.st_uid) : Result<>(Error::from_errno(errno, "open upper"));
    if (shifted && ::chown(upper.c_str(), 0, 0) != 0) shifted = Error::from_errno(errno, "chown upper");
    if (!shifted) {
      remove_tree(dir);
      return shifted.error();
    }
    if (!store_.has_layer(key)) {
      auto committed = store_.commit_layer(key, upper);
      if (!committed) {
        remove_tree(dir);
        return committed.error();
      }
    }
    remove_tree(dir);
    layers_.insert(layers_.begin(), key);
    return ok();
  }

  sandbox::Engine& engine_;
  TemplateStore& store_;
  const config::Build& build_;
  const BuildRequest& req_;
  BuildProgress& progress_;
  int total_ = 0;
  bool cached_ = false;
  std::vector<std::string> layers_;  // topmost first
  std::string chain_;
  std::map<std::string, std::string> env_, args_;
  sandbox::User build_user_ = sandbox::User::root;
  std::string workdir_ = "/";
  TemplateConfig config_;
};

}  // namespace

sandbox::SandboxSpec sandbox_spec(const TemplateStore& store, const TemplateInfo& t, const config::Sandbox& defaults) {
  sandbox::SandboxSpec spec;
  spec.layers = store.layer_paths(t);
  spec.template_name = t.name;
  spec.env = t.config.env;
  spec.kernels = t.config.kernels;
  spec.memory_bytes = t.config.memory_bytes ? t.config.memory_bytes : uint64_t{defaults.memory_mib} << 20;
  spec.cpu_millis = t.config.cpus > 0 ? static_cast<uint32_t>(t.config.cpus * 1000) : defaults.cpu_millis;
  spec.pids = defaults.pids;
  spec.disk_bytes = t.config.disk_bytes ? t.config.disk_bytes : uint64_t{defaults.disk_mib} << 20;
  spec.shm_bytes = std::min(uint64_t{defaults.shm_mib} << 20, spec.memory_bytes / 2);
  spec.lifetime = std::chrono::seconds(defaults.lifetime_s);
  return spec;
}

Result<> start_template_services(sandbox::Sandbox& sandbox, const TemplateInfo& t, std::chrono::milliseconds timeout) {
  const auto& c = t.config;
  if (c.start_cmd.empty()) return ok();
  sandbox::ProcessSpec start;
  // Its output goes to a log inside the sandbox: nothing reads its pipes once we return.
  constexpr const char* kStartLog = "/tmp/brig-start.log";
  start.cmd = "/bin/sh";
  start.args = {"-c", std::string("exec >>") + kStartLog + " 2>&1; " + c.start_cmd};
  start.user = c.user == "root" ? sandbox::User::root : sandbox::User::user;
  start.cwd = c.workdir;
  start.tag = "start";
  BRIG_TRY_ASSIGN(proc, sandbox.spawn(start));
  proc.stdout_fd.reset();
  proc.stderr_fd.reset();
  if (c.ready_cmd.empty()) return ok();
  sandbox::ProcessSpec ready = start;
  ready.args = {"-c", c.ready_cmd};  // its own output is collected, not logged
  ready.tag = "ready";
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    BRIG_TRY_ASSIGN(exited, sandbox.wait_exit(proc.pid, std::chrono::milliseconds(0)));
    if (exited) {
      auto log = sandbox.read_file(kStartLog, start.user, 64 << 10);
      std::string tail = log ? log->substr(log->size() > 2000 ? log->size() - 2000 : 0) : "";
      return Error::make(errc::invalid_argument, "template start command '" + c.start_cmd + "' exited with code " +
                                                     std::to_string(exited->signal ? 128 + exited->signal : exited->exit_code) +
                                                     (tail.empty() ? "" : "; its output:\n" + tail));
    }
    sandbox::RunOptions opts;
    opts.timeout = std::chrono::seconds(10);
    opts.output_limit = 4096;
    BRIG_TRY_ASSIGN(r, sandbox.run(ready, opts));
    if (r.shell_code() == 0) return ok();
    last = r.out + r.err;
    if (Clock::now() >= deadline)
      return Error::make(errc::timed_out, "template readiness check '" + c.ready_cmd + "' did not pass within " +
                                              std::to_string(timeout.count() / 1000) + " s; last output: " + last);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<TemplateInfo> build_template(sandbox::Engine& engine, TemplateStore& store, const BuildRequest& request,
                                    BuildProgress& progress) {
  if (request.name.empty() || request.name.size() > 64 ||
      request.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") != std::string::npos)
    return Error::make(errc::invalid_argument, "template names are 1-64 chars of [a-z0-9-_.]");
  Builder builder(engine, store, request, progress);
  return builder.build();
}

}  // namespace brig::store
