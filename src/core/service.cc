#include "core/service.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <spdlog/spdlog.h>

#include "base/util.h"
#include "egress/tls.h"
#include "store/builtin.h"

namespace brig::core {
namespace {

constexpr int64_t kCpuWindowMs = 250;  // shortest interval a CPU percentage is measured over

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Template builds started by a create log their steps; their output is the build's business.
class LoggedBuild final : public store::BuildProgress {
  void step_started(int i, int n, const std::string& t) override { spdlog::info("template build [{}/{}] {}", i, n, t); }
  void step_output(std::string_view) override {}
  void step_finished(int, int, bool, double) override {}
};

// Template defaults for a sandbox (the configured ones where the template sets none), and the
// shape the warm pool keys on.
sandbox::SandboxSpec spec_for(const store::TemplateStore& store, const store::TemplateInfo& t, const config::Sandbox& defaults,
                              const sandbox::EgressPolicy& egress, const TrustedCas& cas) {
  auto spec = store::sandbox_spec(store, t, defaults);
  if (!cas.layer.empty()) {
    spec.layers.insert(spec.layers.begin(), cas.layer);  // topmost: its bundle is the sandbox's
    for (auto& [k, v] : cas.env) spec.env.try_emplace(k, v);  // a template's own setting wins
  }
  spec.persistent = true;  // survives a daemon restart; the next daemon re-adopts it
  spec.egress = egress;  // its own network; pooled ones start with the default
  return spec;
}

}  // namespace

Result<std::unique_ptr<Service>> Service::open(const ServiceOptions& options, sandbox::Engine& engine,
                                               store::TemplateStore& store, KeyStore& keys) {
  std::unique_ptr<Service> s(new Service(options, engine, store, keys));
  BRIG_TRY_ASSIGN(network, default_network(options.config.network, options.config.limits));
  s->default_network_ = network;
  // brig's CA for header rules: made once per state directory, trusted by sandboxes beside the
  // host's CAs, its key given to brig egress only.
  const std::string ca_dir = engine.state_dir() + "/egress-ca";
  if (::mkdir(ca_dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir " + ca_dir);
  BRIG_TRY_ASSIGN(ca_pem, egress::ensure_ca(ca_dir + "/ca.crt", ca_dir + "/ca.key"));
  BRIG_TRY_ASSIGN(cas, trusted_cas(engine.state_dir(), options.config.network.ca_file, ca_pem));
  s->trusted_cas_ = std::move(cas);
  BRIG_TRY_ASSIGN(state, DaemonState::open(engine.state_dir()));
  s->state_ = std::move(state);
  BRIG_TRY_ASSIGN(secrets, SecretStore::open(engine.state_dir(), options.config.limits));
  s->secrets_ = std::move(secrets);
  auto* me = s.get();
  s->secrets_->on_change([me] { me->retell_rules(); });
  if (!options.egress_exe.empty()) {
    if (auto link = EgressLink::start(options.egress_exe, options.config, ca_dir + "/ca.crt", ca_dir + "/ca.key"); link) {
      s->egress_ = std::move(*link);
      s->egress_->on_decision([me](const egress::Decision& d) { me->log_decision(d); });
    }
    else  // the rest works; a policy with domains is refused with this reason
      spdlog::error("brig egress did not start, so domain rules in allowOut cannot be enforced: {}", link.error().message());
  }
  s->adopt();
  // Warm sandboxes for the templates already built, so creates are hand-overs.
  if (options.pool_size)
    if (auto all = store.list())
      for (auto& t : *all)
        if (store::builtin_templates().count(t.name))
          if (auto policy = s->policy_for(s->default_network_); policy)
            engine.set_pool(spec_for(store, t, options.config.sandbox, *policy, s->trusted_cas_), options.pool_size);
  auto* self = s.get();
  s->reaper_ = std::thread([self] { self->reap_loop(); });
  return s;
}

Service::Service(ServiceOptions options, sandbox::Engine& engine, store::TemplateStore& store, KeyStore& keys)
    : options_(options), engine_(engine), store_(store), keys_(keys) {}

Service::~Service() {
  {
    std::lock_guard lock(waker_->mu);
    waker_->stopping = true;
  }
  waker_->cv.notify_all();
  if (reaper_.joinable()) reaper_.join();
  egress_.reset();  // first: its reader thread logs decisions into live_
}

void Service::ReapWaker::wake() {
  {
    std::lock_guard lock(mu);
    due = true;
  }
  cv.notify_all();
}

void Service::reap_loop() {
  const auto sweep = std::chrono::milliseconds(options_.config.server.reap_sweep_ms);
  auto& w = *waker_;
  std::unique_lock lock(w.mu);
  for (;;) {
    w.cv.wait_for(lock, sweep, [&] { return w.stopping || w.due; });
    if (w.stopping) return;
    w.due = false;
    lock.unlock();
    // The engine first: a paused sandbox whose processes died is kept on its disk there, and
    // stands here as that (its memory lost), not as ended.
    engine_.reap();
    std::vector<std::shared_ptr<Live>> dead, lost;
    {
      std::lock_guard live_lock(mu_);
      for (auto& [id, l] : live_)
        if (!l->sandbox->alive()) (l->paused.load() ? lost : dead).push_back(l);
    }
    // A Live whose handle has ended is not dead while the engine still has the sandbox: it is
    // being paused to its disk or booted again (the operation puts a new Live in its place), or
    // it lost its memory while paused (its new Live, a stopped one, is put in place here).
    std::erase_if(dead, [&](const std::shared_ptr<Live>& l) {
      auto info = engine_.info(l->id);
      return info && (info->state == "running" || info->state == "paused");
    });
    for (auto& l : lost) {
      auto info = engine_.info(l->id);
      if (!info || (info->state != "running" && info->state != "paused")) {
        dead.push_back(l);
        continue;
      }
      if (info->state != "paused" || info->paused != sandbox::SandboxInfo::Paused::memory_lost) continue;
      {
        std::lock_guard net(l->network_mu);
        untell_egress(*l);
      }
      if (auto now = relive(l->id, true, l.get()))
        now->log->add(LogLevel::warn, "Sandbox lost its memory while paused (its processes are gone); its disk is kept");
    }
    {
      std::lock_guard live_lock(mu_);
      std::erase_if(dead, [&](const std::shared_ptr<Live>& l) {
        auto it = live_.find(l->id);
        if (it == live_.end() || it->second != l) return true;  // replaced meanwhile: not this one's to end
        live_.erase(it);
        retire_locked(*l, "Sandbox ended (its timeout ran out, or it ended from inside)");
        return false;
      });
    }
    for (auto& l : dead) {
      {
        std::lock_guard net(l->network_mu);
        untell_egress(*l);
      }
      state_->forget(l->id);
    }
    // The engine's reap (above) also finds what no Live stands for (a crash's leftovers, ended
    // pool sandboxes): on every sweep, and whenever a death was pushed.
    lock.lock();
  }
}

void Service::adopt() {
  std::set<std::string> adopted;
  for (auto& id : engine_.adopt_orphans()) {
    auto sb = engine_.get(id);
    auto info = engine_.info(id);
    if (!sb || !info) continue;
    auto l = std::make_shared<Live>();
    l->sandbox = *sb;
    l->id = id;
    auto saved = state_->load(id);
    l->access_token = saved ? saved->token : new_sandbox_id() + new_sandbox_id();
    if (saved && !saved->network.empty()) l->network = network_from_text(saved->network);
    if (saved) l->ingress = saved->ingress;
    l->paused = info->state == "paused";
    auto tpl = store_.find(saved ? saved->template_name : info->template_name);
    if (tpl && *tpl) l->tpl = **tpl;
    else l->tpl.name = info->template_name;
    l->env = l->tpl.config.env;
    // Its redirects name the ports of the previous daemon's brig egress: written again (a
    // sandbox paused to its disk has no network until it boots again).
    if (needs_egress(l->network) && info->paused == sandbox::SandboxInfo::Paused::memory) {
      std::lock_guard net(l->network_mu);
      auto policy = policy_for(l->network);
      auto r = policy ? tell_egress(*l, l->network) : Result<>(policy.error());
      if (r) r = engine_.set_egress(id, *policy);
      if (!r) spdlog::error("sandbox {}: its domain rules are not enforced: {}", id, r.error().message());
    }
    add_live(l);
    l->log->add(LogLevel::info, "Sandbox adopted by a restarted daemon (its earlier log is gone)",
                {{"template", l->tpl.name}});
    adopted.insert(id);
    spdlog::info("re-adopted sandbox {} ({})", id, l->tpl.name);
  }
  // What the daemon kept of sandboxes that ended while none ran.
  state_->retain(adopted);
}

void Service::add_live(std::shared_ptr<Live> l) {
  l->secrets = secrets_;
  l->log = std::make_shared<SandboxLog>(options_.config.limits.sandbox_log_entries);
  // The first CPU window starts when the daemon hands the sandbox out, not when it was made
  // (a pooled sandbox used CPU before: its kernel's start, for one).
  if (auto u = l->sandbox->usage()) l->cpu = {steady_ms(), u->cpu_usage_ns, 0};
  state_->save(l->id, {l->access_token, l->tpl.name, l->ingress, network_to_text(l->network)});
  // Its end wakes the reaper (without an event loop, the sweep finds it).
  (void)l->sandbox->on_gone([w = waker_] { w->wake(); });
  std::lock_guard lock(mu_);
  live_[l->id] = std::move(l);
}

std::shared_ptr<Live> Service::relive(const std::string& id, bool paused, const Live* expected) {
  auto sb = engine_.get(id);
  if (!sb) return nullptr;
  auto l = std::make_shared<Live>();
  l->sandbox = *sb;
  if (auto u = l->sandbox->usage()) l->cpu = {steady_ms(), u->cpu_usage_ns, 0};
  std::unique_lock lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end() || (expected && it->second.get() != expected)) return nullptr;
  const auto& old = it->second;
  l->id = old->id;
  l->access_token = old->access_token;
  l->tpl = old->tpl;
  l->env = old->env;
  l->ingress = old->ingress;
  {
    std::lock_guard data(old->mu);
    l->network = old->network;
  }
  l->secrets = old->secrets;
  l->log = old->log;
  l->paused = paused;
  it->second = l;
  lock.unlock();
  (void)l->sandbox->on_gone([w = waker_] { w->wake(); });
  return l;
}

void Service::forget(const std::string& id) {
  std::shared_ptr<Live> l;
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(id); it != live_.end()) {
      l = it->second;
      live_.erase(it);
      retire_locked(*l, "Sandbox killed");
    }
  }
  if (l) {
    std::lock_guard net(l->network_mu);
    untell_egress(*l);
  }
  state_->forget(id);
}

void Service::retire_locked(const Live& l, std::string why) {
  if (!l.log) return;
  l.log->add(LogLevel::info, std::move(why));
  const size_t keep = options_.config.limits.ended_sandbox_logs;
  if (keep == 0) return;
  while (ended_logs_.size() >= keep) ended_logs_.pop_front();
  ended_logs_.emplace_back(l.id, l.log);
}

Result<std::vector<LogEntry>> Service::logs(const std::string& id, const LogQuery& q) {
  std::shared_ptr<SandboxLog> log;
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(id); it != live_.end()) log = it->second->log;
    for (auto it = ended_logs_.rbegin(); !log && it != ended_logs_.rend(); ++it)
      if (it->first == id) log = it->second;
  }
  if (!log) return Error::make(errc::not_found, "sandbox '" + id.substr(0, 64) + "' not found");
  return log->query(q);
}

void Service::log_decision(const egress::Decision& d) {
  std::shared_ptr<SandboxLog> log;
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(d.sandbox); it != live_.end()) log = it->second->log;
  }
  if (!log) return;
  // Names, addresses and reasons only: brig egress never reports a header or a payload.
  const std::string& what = d.name.empty() ? d.dest : d.name;
  std::string message = d.kind == "dns" ? "DNS query for " + what : "Connection to " + what;
  message += d.allow ? " allowed" : " denied";
  std::map<std::string, std::string> fields = {{"kind", d.kind}, {"protocol", d.protocol},
                                               {"verdict", d.allow ? "allow" : "deny"}, {"reason", d.reason}};
  if (!d.name.empty()) fields["name"] = d.name;
  if (!d.dest.empty()) fields["dest"] = d.dest;
  log->add(d.allow ? LogLevel::info : LogLevel::warn, std::move(message), std::move(fields));
}

Result<sandbox::EgressPolicy> Service::policy_for(const NetworkConfig& c) const {
  auto p = egress_policy(c);
  if (!needs_egress(c)) return p;
  if (!egress_)
    return Error::make(errc::unsupported, "domains in allowOut and header rules need brig egress, which is not running "
                                          "on this server (see the daemon's log)");
  p.proxy_port = egress_->ports().proxy;
  p.dns_stub_port = egress_->ports().dns;
  p.dns = false;  // names come from the stub
  return p;
}

Result<> Service::check_rules_can_run(const NetworkConfig& c) const {
  if (c.rules.empty()) return ok();
  if (trusted_cas_.layer.empty())
    return Error::make(errc::unsupported, "header rules need a CA bundle for sandboxes to trust brig's CA in "
                                          "(network.ca_file '" + options_.config.network.ca_file + "' is missing)");
  for (const auto& [domain, headers] : c.rules)
    for (const auto& [name, value] : headers)
      for (const auto& secret : secret_refs(value))
        if (!secrets_->value(secret))
          return Error::make(errc::invalid_argument, "network.rules[" + domain + "]: there is no secret named '" + secret + "'");
  return ok();
}

std::vector<egress::HeaderRule> Service::resolved_rules(const NetworkConfig& c) const {
  return resolve_rules(c.rules, [this](const std::string& name) -> std::optional<std::string> {
    auto v = secrets_->value(name);
    return v ? std::optional<std::string>(std::move(*v)) : std::nullopt;
  });
}

void Service::retell_rules() {
  std::vector<std::shared_ptr<Live>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, l] : live_) all.push_back(l);
  }
  for (auto& l : all) {
    std::lock_guard net(l->network_mu);
    NetworkConfig c;
    {
      std::lock_guard data(l->mu);
      c = l->network;
    }
    if (c.rules.empty() || !l->proxied) continue;
    if (auto r = tell_egress(*l, c); !r)
      spdlog::error("sandbox {}: its header rules could not be given their secrets' new values: {}", l->id, r.error().message());
  }
}

Result<> Service::tell_egress(Live& l, const NetworkConfig& c) {
  if (!needs_egress(c)) {
    untell_egress(l);
    return ok();
  }
  auto address = l.sandbox->address();
  if (!address) return Error::make(errc::conflict, "sandbox " + l.id + " has no network of its own");
  if (!egress_) return Error::make(errc::unsupported, "domains in allowOut and header rules need brig egress, which is not running");
  BRIG_TRY(egress_->set(*address, l.id, c.allow_out, proxy_deny_out(c), resolved_rules(c)));
  l.proxied = address;
  return ok();
}

void Service::untell_egress(Live& l) {
  if (!l.proxied || !egress_) return;
  if (auto r = egress_->remove(*l.proxied); !r)
    spdlog::warn("brig egress: forget sandbox {}: {}", l.id, r.error().message());
  l.proxied.reset();
}

std::shared_ptr<Live> Service::live(const std::string& id) {
  if (!is_valid_sandbox_id(id)) return nullptr;
  std::lock_guard lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end() || !it->second->sandbox->alive()) return nullptr;
  return it->second;
}

Result<std::shared_ptr<Live>> Service::find(const std::string& id) {
  if (auto l = live(id)) return l;
  return Error::make(errc::not_found, "sandbox '" + id.substr(0, 64) + "' not found");
}

void Service::record_create(double ms) {
  std::lock_guard lock(metrics_.mu);
  size_t b = 0;
  while (b < metrics_.create_ms_buckets.size() && ms > metrics_.create_ms_buckets[b]) ++b;
  ++metrics_.create_ms_counts[b];
  metrics_.create_ms_sum += ms;
}

Result<std::shared_ptr<Live>> Service::create(const CreateSandbox& cmd) {
  auto started = std::chrono::steady_clock::now();
  BRIG_TRY_ASSIGN(timeout, check_timeout(cmd.timeout.value_or(std::chrono::seconds(options_.config.sandbox.lifetime_s))));
  BRIG_TRY(validate_ingress(cmd.ingress));
  std::string ref = cmd.template_ref.empty() ? "base" : cmd.template_ref;
  if (auto slash = ref.find('/'); slash != std::string::npos) ref = ref.substr(slash + 1);
  LoggedBuild progress;
  auto tpl = store::resolve_template(engine_, store_, ref, progress);
  if (!tpl) {
    ++metrics_.create_errors;
    return tpl.error();
  }
  NetworkConfig network = default_network_;
  if (cmd.network) {
    network.allow_out = cmd.network->allow_out;
    network.deny_out = cmd.network->deny_out;
    network.rules = cmd.network->rules;
  }
  if (cmd.allow_internet_access) network.allow_internet_access = *cmd.allow_internet_access;
  auto checked = check_network(network, options_.config.limits);
  if (checked) checked = check_rules_can_run(network);
  if (auto& r = checked; !r) {
    ++metrics_.create_errors;
    return r.error();
  }
  auto policy = policy_for(network);
  if (!policy) {
    ++metrics_.create_errors;
    return policy.error();
  }
  auto spec = spec_for(store_, *tpl, options_.config.sandbox, *policy, trusted_cas_);
  for (auto& [k, v] : cmd.env) spec.env[k] = v;
  spec.metadata = cmd.metadata;
  spec.lifetime = timeout;
  auto sb = engine_.create(spec);
  if (!sb) {
    ++metrics_.create_errors;
    return sb.error().wrap("create sandbox");
  }
  if (auto s = store::start_template_services(**sb, *tpl); !s) {
    ++metrics_.create_errors;
    (void)engine_.kill((*sb)->id());
    return s.error().wrap("start the template's services");
  }
  auto l = std::make_shared<Live>();
  l->sandbox = *sb;
  l->id = (*sb)->id();
  l->access_token = new_sandbox_id() + new_sandbox_id();
  l->tpl = *tpl;
  l->env = spec.env;
  l->network = network;
  l->ingress = cmd.ingress;
  {
    std::lock_guard net(l->network_mu);
    if (auto r = tell_egress(*l, network); !r) {
      ++metrics_.create_errors;
      (void)engine_.kill(l->id);
      return r.error().wrap("give brig egress the sandbox's policy");
    }
  }
  add_live(l);
  l->log->add(LogLevel::info, "Sandbox created",
              {{"template", tpl->name}, {"templateID", tpl->id}, {"timeout_s", std::to_string(timeout.count())},
               {"internet", network.allow_internet_access ? "allowed" : "denied"}});
  ++metrics_.creates;
  record_create(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return l;
}

SandboxPage Service::list(const ListSandboxes& q) {
  std::vector<sandbox::SandboxInfo> rows;
  for (auto& s : engine_.list()) {
    if (!((s.state == "running" && q.running) || (s.state == "paused" && q.paused)) || !live(s.id)) continue;
    bool match = true;
    for (auto& [k, v] : q.metadata) match &= s.metadata.count(k) && s.metadata.at(k) == v;
    if (!q.template_name.empty()) match &= s.template_name == q.template_name;
    match &= s.started_at_ms >= q.started_after_ms;
    if (match) rows.push_back(s);
  }
  std::sort(rows.begin(), rows.end(), [asc = q.ascending](auto& a, auto& b) {
    return asc ? a.started_at_ms < b.started_at_ms : a.started_at_ms > b.started_at_ms;
  });
  SandboxPage page;
  for (size_t i = q.offset; i < rows.size() && page.rows.size() < q.limit; ++i) page.rows.push_back(rows[i]);
  if (q.offset + page.rows.size() < rows.size()) page.next_offset = q.offset + page.rows.size();
  return page;
}

Result<sandbox::SandboxInfo> Service::info(const std::string& id) {
  BRIG_TRY(find(id));
  auto info = engine_.info(id);
  if (!info || (info->state != "running" && info->state != "paused"))
    return Error::make(errc::not_found, "sandbox '" + id + "' not found");
  return *info;
}

Result<> Service::kill(const std::string& id) {
  BRIG_TRY(find(id));
  forget(id);
  return engine_.kill(id);
}

Result<> Service::set_timeout(const std::string& id, std::chrono::seconds timeout) {
  BRIG_TRY_ASSIGN(l, find(id));
  BRIG_TRY(check_running(*l));
  BRIG_TRY(check_timeout(timeout));
  BRIG_TRY(engine_.set_timeout(id, timeout));
  l->log->add(LogLevel::info, "Timeout set", {{"timeout_s", std::to_string(timeout.count())}});
  return ok();
}

Result<std::chrono::seconds> Service::check_timeout(std::chrono::seconds t) const {
  const auto max = options_.config.sandbox.max_lifetime_s;
  if (t < std::chrono::seconds(1) || t.count() > max)
    return Error::make(errc::invalid_argument, "timeout must be between 1 and " + std::to_string(max) +
                                                   " seconds (sandbox.max_lifetime_s)");
  return t;
}

Result<Service::Connected> Service::connect(const std::string& id, std::optional<std::chrono::seconds> wanted,
                                            bool keep_memory) {
  BRIG_TRY_ASSIGN(l, find(id));
  BRIG_TRY_ASSIGN(timeout, check_timeout(wanted.value_or(std::chrono::seconds(options_.config.sandbox.lifetime_s))));
  if (l->paused.load()) {
    // Resumed with at least `timeout` (E2B: the TTL is only ever extended).
    auto info = engine_.info(id);
    const auto left = std::chrono::seconds(info ? info->paused_left_ms / 1000 : 0);
    auto resumed = resume(id, std::max(left, timeout), keep_memory);
    if (resumed) return Connected{*resumed, true};
    // Resumed meanwhile by someone else: connected as to a running one.
    if (!resumed.error().is(errc::conflict) || live(id) == nullptr || live(id)->paused.load()) return resumed.error();
    l = live(id);
  }
  auto info = engine_.info(id);
  if (info && info->end_at_ms < now_unix_ms() + timeout.count() * 1000) (void)engine_.set_timeout(id, timeout);
  l->log->add(LogLevel::info, "Connected", {{"timeout_s", std::to_string(timeout.count())}});
  return Connected{l, false};
}

Result<> Service::update_network(const std::string& id, const NetworkConfig& network) {
  BRIG_TRY_ASSIGN(l, find(id));
  BRIG_TRY(check_network(network, options_.config.limits));
  BRIG_TRY(check_rules_can_run(network));
  // One update at a time per sandbox, so the stored configuration is the enforced one.
  std::lock_guard lock(l->network_mu);
  BRIG_TRY_ASSIGN(policy, policy_for(network));
  // The proxy learns a policy with domains before the redirect reaches it, and forgets one only
  // after the redirect is gone.
  if (needs_egress(network)) BRIG_TRY(tell_egress(*l, network));
  BRIG_TRY(engine_.set_egress(id, policy));
  if (!needs_egress(network)) untell_egress(*l);
  {
    std::lock_guard data(l->mu);
    l->network = network;
  }
  state_->save_network(id, network_to_text(network));
  // What it is now, in short (entries are bounded; a long list is cut at 1 KiB here).
  auto joined = [](const auto& items, auto name) {
    std::string out;
    for (const auto& item : items) {
      if (out.size() > 1024) return out + ",...";
      out += (out.empty() ? "" : ",") + std::string(name(item));
    }
    return out;
  };
  auto self = [](const std::string& x) -> const std::string& { return x; };
  l->log->add(LogLevel::info, "Network policy replaced",
              {{"allowOut", joined(network.allow_out, self)},
               {"denyOut", joined(network.deny_out, self)},
               {"internet", network.allow_internet_access ? "allowed" : "denied"},
               {"rules", joined(network.rules, [](const auto& kv) -> const std::string& { return kv.first; })}});
  return ok();
}

Result<> Service::check_running(const Live& l) {
  if (l.paused.load()) return Error::make(errc::conflict, "sandbox '" + l.id + "' is paused: resume it first (Sandbox.connect, "
                                                           "POST /sandboxes/" + l.id + "/resume)");
  return ok();
}

Result<> Service::pause(const std::string& id, bool keep_memory) {
  BRIG_TRY_ASSIGN(l, find(id));
  if (l->paused.load()) return Error::make(errc::conflict, "sandbox '" + id + "' is already paused");
  if (!keep_memory) {
    // Its network goes with its processes (its address may be another sandbox's by its boot).
    {
      std::lock_guard net(l->network_mu);
      untell_egress(*l);
    }
    if (auto r = engine_.pause(id, false); !r) {
      if (live(id) == l) {  // still running as it was: its policy holds again
        std::lock_guard net(l->network_mu);
        NetworkConfig c;
        {
          std::lock_guard data(l->mu);
          c = l->network;
        }
        (void)tell_egress(*l, c);
      } else {
        relive(id, true);
      }
      return r.error();
    }
    if (auto now = relive(id, true)) now->log->add(LogLevel::info, "Sandbox paused", {{"memory", "dropped (its disk is kept)"}});
    return ok();
  }
  // Paused memory stays resident: bounded, and checked with this sandbox's own.
  const uint64_t cap = uint64_t{options_.config.sandbox.paused_memory_mib} << 20;
  std::vector<std::shared_ptr<Live>> counted{l};
  {
    std::lock_guard lock(mu_);  // the map only: cgroup files are read after
    for (auto& [other_id, other] : live_)
      if (other->paused.load()) counted.push_back(other);
  }
  uint64_t held = 0;
  for (auto& c : counted)
    if (auto u = c->sandbox->usage()) held += u->memory_bytes;
  if (cap == 0)
    return Error::make(errc::unavailable, "this server does not pause sandboxes (sandbox.paused_memory_mib = 0); "
                                          "the sandbox keeps running");
  if (held > cap)
    return Error::make(errc::unavailable, "paused sandboxes would hold " + std::to_string(held >> 20) +
                                              " MiB of memory, over sandbox.paused_memory_mib = " +
                                              std::to_string(cap >> 20) + " MiB; the sandbox keeps running");
  BRIG_TRY(engine_.pause(id));
  l->paused = true;
  l->log->add(LogLevel::info, "Sandbox paused", {{"memory", "kept"}});
  return ok();
}

Result<std::shared_ptr<Live>> Service::boot(const std::shared_ptr<Live>& l,
                                             std::optional<std::chrono::milliseconds> lifetime) {
  NetworkConfig network;
  {
    std::lock_guard data(l->mu);
    network = l->network;
  }
  BRIG_TRY_ASSIGN(policy, policy_for(network));
  const auto started = std::chrono::steady_clock::now();
  BRIG_TRY(engine_.reboot(l->id, lifetime, policy));
  auto now = relive(l->id, false);
  if (!now) return Error::make(errc::not_found, "sandbox '" + l->id + "' was killed while it booted");
  {
    std::lock_guard net(now->network_mu);
    if (auto r = tell_egress(*now, network); !r) {
      spdlog::error("sandbox {}: booted again without its domain rules: {}", now->id, r.error().message());
      now->log->add(LogLevel::error, "Its domain rules are not enforced", {{"error", r.error().message()}});
    }
  }
  if (auto s = store::start_template_services(*now->sandbox, now->tpl); !s)
    now->log->add(LogLevel::error, "The template's start command failed", {{"error", s.error().message()}});
  now->log->add(LogLevel::info, "Sandbox booted again on its disk",
                {{"ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - started).count())}});
  return now;
}

Result<std::shared_ptr<Live>> Service::resume(const std::string& id, std::optional<std::chrono::seconds> timeout,
                                              bool keep_memory) {
  BRIG_TRY_ASSIGN(l, find(id));
  if (timeout) BRIG_TRY(check_timeout(*timeout));
  BRIG_TRY_ASSIGN(info, engine_.info(id));
  using Paused = sandbox::SandboxInfo::Paused;
  if (info.state == "paused" && (info.paused != Paused::memory || !keep_memory)) {
    if (keep_memory && info.paused == Paused::memory_lost)
      return Error::make(errc::conflict,
                         "sandbox '" + id + "' lost its memory while it was paused (the host restarted, or its processes "
                         "were killed); its disk is kept: resume it from its disk with memory: false "
                         "(Sandbox.connect(id, { onResume: 'reboot' }))");
    return boot(l, timeout ? std::optional<std::chrono::milliseconds>(*timeout) : std::nullopt);
  }
  BRIG_TRY(engine_.resume(id, timeout ? std::optional<std::chrono::milliseconds>(*timeout) : std::nullopt));
  l->paused = false;
  std::map<std::string, std::string> fields;
  if (timeout) fields["timeout_s"] = std::to_string(timeout->count());
  l->log->add(LogLevel::info, "Sandbox resumed", std::move(fields));
  return l;
}

Metric Service::metric(Live& l) {
  auto info = engine_.info(l.id);
  auto u = l.sandbox->usage();
  Metric m;
  m.timestamp_ms = now_unix_ms();
  m.cpu_count = info ? std::max<uint32_t>(1, (info->cpu_millis + 999) / 1000) : 1;
  double capacity = info && info->cpu_millis ? info->cpu_millis / 1000.0 : 1.0;
  if (u) {
    std::lock_guard lock(l.mu);
    auto& c = l.cpu;
    const int64_t at = steady_ms();
    if (u->cpu_usage_ns < c.used_ns) {
      c = {at, u->cpu_usage_ns, 0};  // a counter that went back (a new cgroup): start again
    } else if (at - c.at_ms >= kCpuWindowMs) {
      // Readings closer than kCpuWindowMs apart repeat the last figure rather than divide noise.
      double wall_ns = static_cast<double>(at - c.at_ms) * 1e6;
      c.pct = std::clamp(100.0 * static_cast<double>(u->cpu_usage_ns - c.used_ns) / (wall_ns * capacity), 0.0, 100.0);
      c.at_ms = at;
      c.used_ns = u->cpu_usage_ns;
    }
    m.cpu_used_pct = std::round(c.pct * 100) / 100;
    m.mem_used = u->memory_bytes;
    m.mem_cache = u->cache_bytes;
    m.disk_used = u->disk_used_bytes;
  }
  m.mem_total = info ? info->memory_bytes : 0;
  m.disk_total = info ? info->disk_bytes : 0;
  return m;
}

std::string Service::template_id(const std::string& name) {
  auto t = store_.find(name);
  return t && *t ? (*t)->id : name;
}

Result<std::vector<store::TemplateInfo>> Service::templates() { return store_.list(); }

Counters Service::counters() {
  Counters c;
  for (auto& s : engine_.list()) c.running += s.state == "running";
  c.pooled = engine_.pool_stats().ready;
  c.creates = metrics_.creates;
  c.create_errors = metrics_.create_errors;
  c.execs = metrics_.execs;
  c.bytes_streamed = metrics_.bytes_streamed;
  std::lock_guard lock(metrics_.mu);
  c.create_ms_buckets = metrics_.create_ms_buckets;
  c.create_ms_counts = metrics_.create_ms_counts;
  c.create_ms_sum = metrics_.create_ms_sum;
  c.errors_by_route = metrics_.errors_by_route;
  return c;
}

void Service::count_http_error(const std::string& route) {
  std::lock_guard lock(metrics_.mu);
  if (metrics_.errors_by_route.size() < 1000 || metrics_.errors_by_route.count(route)) ++metrics_.errors_by_route[route];
}

}  // namespace brig::core
