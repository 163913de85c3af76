// brig egress (hidden): brig-egress, the egress proxy and DNS stub of sandbox networks
// (egress/proxy.h). The daemon starts it with a control socket; tests start it by hand.
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "egress/proxy.h"

namespace brig::cli {
namespace {

// "nobody" or "65534": the uid, and the user's own group (or the same number for a uid that no
// user has).
Result<egress::ProxyOptions::Identity> identity(const std::string& user) {
  unsigned id = 0;
  auto [end, ec] = std::from_chars(user.data(), user.data() + user.size(), id);
  if (ec == std::errc() && end == user.data() + user.size()) {
    const passwd* pw = getpwuid(id);
    return egress::ProxyOptions::Identity{static_cast<uid_t>(id), pw ? pw->pw_gid : static_cast<gid_t>(id)};
  }
  const passwd* pw = getpwnam(user.c_str());
  if (!pw) return Error::make(errc::not_found, "no user \"" + user + "\" (egress.user)");
  return egress::ProxyOptions::Identity{pw->pw_uid, pw->pw_gid};
}

}  // namespace

Runner add_egress(CLI::App& app, Globals& globals) {
  auto* sub = app.add_subcommand("egress", "Run brig-egress, the egress proxy and DNS stub of sandbox networks.");
  sub->group("");  // hidden: the daemon starts it
  auto o = std::make_shared<egress::ProxyOptions>();
  auto user = std::make_shared<std::string>();
  sub->add_option("--listen", o->listen, "IP:PORT the sandboxes' TCP is redirected to")->required();
  sub->add_option("--dns-listen", o->dns_listen, "IP:PORT of the DNS stub, UDP and TCP (none if not given)");
  sub->add_option("--dns-upstream", o->dns_upstream,
                  "Resolver to ask, IP[:PORT] (repeatable); default: the nameservers of /etc/resolv.conf");
  sub->add_option("--control-fd", o->control_fd, "The daemon's end of the control socketpair")->required();
  sub->add_option("--deny", o->deny, "One more always-denied IP or CIDR: host addresses, the sandbox range (repeatable)");
  sub->add_option("--ca-cert", o->ca_cert, "brig's CA certificate (PEM), for header rules; none: rules are not applied");
  sub->add_option("--ca-key", o->ca_key, "Its private key (PEM), read before privileges are dropped");
  sub->add_option("--upstream-ca", o->upstream_ca,
                  "CA bundle upstream servers of header rules are verified against (default: OpenSSL's)");
  sub->add_option("--user", *user, "User to run as once the sockets are bound (default: egress.user)");
  return [sub, o, user, &globals]() -> int {
    if (!sub->parsed()) return -1;
    o->limits = globals.config.egress;
    if (geteuid() == 0) {
      auto id = identity(user->empty() ? globals.config.egress.user : *user);
      if (!id) {
        std::cerr << "brig egress: " << id.error().message() << "\n";
        return 2;
      }
      o->run_as = *id;
    }
    return egress::run_proxy(*o);
  };
}

}  // namespace brig::cli
