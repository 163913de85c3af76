#include "egress/tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/fd.h"
#include "base/util.h"

namespace brig::egress {

namespace ssl = boost::asio::ssl;

namespace {

constexpr size_t kMaxPem = 64 * 1024;
constexpr size_t kMaxLeaves = 1024;                         // names cached; then the cache starts over
constexpr long kCaDays = 3650;
constexpr long kLeafSeconds = 7 * 24 * 3600;
constexpr auto kLeafRefresh = std::chrono::hours(24);      // a cached leaf older than this is made again

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Bio = std::unique_ptr<BIO, BioFree>;

Error ssl_error(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return Error::make(errc::unsupported, what + ": " + buf);
}

Result<Pkey> new_key() {
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) return ssl_error("generating a P-256 key");
  return key;
}

Result<> add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return ssl_error(std::string("certificate extension ") + OBJ_nid2sn(nid));
  int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (!added) return ssl_error("adding a certificate extension");
  return ok();
}

// A certificate for `key`, named `cn`, signed by `issuer_key` as `issuer` (itself when null).
Result<Cert> make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key, long seconds,
                       bool ca, const std::string& dns_name) {
  Cert cert(X509_new());
  if (!cert) return ssl_error("X509_new");
  X509_set_version(cert.get(), 2);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  if (!serial || !BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())))
    return ssl_error("certificate serial");
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);  // clocks that lag a little still accept it
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), seconds);
  if (!X509_set_pubkey(cert.get(), key)) return ssl_error("X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("brig"), -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0))
    return ssl_error("certificate name");
  X509* signer = issuer ? issuer : cert.get();
  if (!X509_set_issuer_name(cert.get(), X509_get_subject_name(signer))) return ssl_error("certificate issuer");
  BRIG_TRY(add_ext(cert.get(), signer, NID_basic_constraints, ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE"));
  BRIG_TRY(add_ext(cert.get(), signer, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"));
  BRIG_TRY(add_ext(cert.get(), signer, NID_subject_key_identifier, "hash"));
  if (!ca) {
    BRIG_TRY(add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
    BRIG_TRY(add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
    BRIG_TRY(add_ext(cert.get(), signer, NID_subject_alt_name, ("DNS:" + dns_name).c_str()));
  }
  if (!X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256())) return ssl_error("signing a certificate");
  return cert;
}

Result<std::string> to_pem(X509* cert, EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return ssl_error("BIO_new");
  if (cert && !PEM_write_bio_X509(bio.get(), cert)) return ssl_error("PEM_write_bio_X509");
  if (key && !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
    return ssl_error("PEM_write_bio_PrivateKey");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// Written aside with `mode`, then renamed over `path`: a reader finds the whole file or none.
Result<> write_file_atomic(const std::string& path, const std::string& bytes, mode_t mode) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) return Error::from_errno(errno, "create " + tmp);
  BRIG_TRY(write_fd_all(fd.get(), bytes, tmp));
  if (::fsync(fd.get()) != 0) return Error::from_errno(errno, "fsync " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Error::from_errno(errno, "rename " + tmp);
  return ok();
}

}  // namespace

Result<std::string> ensure_ca(const std::string& cert_path, const std::string& key_path) {
  struct stat st;
  if (::stat(cert_path.c_str(), &st) == 0 && ::stat(key_path.c_str(), &st) == 0)
    return read_small_file(cert_path, kMaxPem);
  BRIG_TRY_ASSIGN(key, new_key());
  char host[64] = "";
  (void)::gethostname(host, sizeof host - 1);
  BRIG_TRY_ASSIGN(cert, make_cert(key.get(), std::string("brig egress CA (") + host + ")", nullptr, nullptr,
                                  kCaDays * 24 * 3600, true, ""));
  BRIG_TRY_ASSIGN(key_pem, to_pem(nullptr, key.get()));
  BRIG_TRY_ASSIGN(cert_pem, to_pem(cert.get(), nullptr));
  // The key first: a certificate is never left without its key.
  BRIG_TRY(write_file_atomic(key_path, key_pem, 0600));
  BRIG_TRY(write_file_atomic(cert_path, cert_pem, 0644));
  return cert_pem;
}

struct Minter::Keys {
  Cert ca;
  Pkey ca_key;
  Pkey leaf_key;
};

Minter::Minter() : keys_(std::make_unique<Keys>()), client_(ssl::context::tls_client) {}
Minter::~Minter() = default;

Result<std::unique_ptr<Minter>> Minter::open(const std::string& ca_cert, const std::string& ca_key,
                                             const std::string& upstream_ca) {
  std::unique_ptr<Minter> m(new Minter());
  BRIG_TRY_ASSIGN(cert_pem, read_small_file(ca_cert, kMaxPem));
  BRIG_TRY_ASSIGN(key_pem, read_small_file(ca_key, kMaxPem));
  Bio cb(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  Bio kb(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  if (!cb || !kb) return ssl_error("BIO_new_mem_buf");
  m->keys_->ca.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  m->keys_->ca_key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  if (!m->keys_->ca || !m->keys_->ca_key) return ssl_error("reading the egress CA (" + ca_cert + ")");
  if (X509_check_private_key(m->keys_->ca.get(), m->keys_->ca_key.get()) != 1)
    return ssl_error("the egress CA's key does not match its certificate");
  BRIG_TRY_ASSIGN(leaf, new_key());
  m->keys_->leaf_key = std::move(leaf);

  SSL_CTX* c = m->client_.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  // Loaded now, whole: after start-up the proxy opens no file (its seccomp allowlist).
  const std::string bundle = upstream_ca.empty() || ::access(upstream_ca.c_str(), R_OK) != 0
                                 ? std::string(X509_get_default_cert_file())
                                 : upstream_ca;
  if (SSL_CTX_load_verify_locations(c, bundle.c_str(), nullptr) != 1)
    return ssl_error("loading the CAs upstream servers are verified against (" + bundle + ")");
  return m;
}

Result<std::shared_ptr<ssl::context>> Minter::server(const std::string& name) {
  const auto now = std::chrono::steady_clock::now();
  if (auto it = leaves_.find(name); it != leaves_.end() && now - it->second.minted < kLeafRefresh) return it->second.ctx;
  if (leaves_.size() >= kMaxLeaves) leaves_.clear();
  BRIG_TRY_ASSIGN(cert, make_cert(keys_->leaf_key.get(), name, keys_->ca.get(), keys_->ca_key.get(), kLeafSeconds,
                                  false, name));
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate(c, cert.get()) != 1 || SSL_CTX_use_PrivateKey(c, keys_->leaf_key.get()) != 1)
    return ssl_error("a certificate for " + name);
  // HTTP/1.1 only: the requests are read and changed one by one (RFC 7301: no overlap, no ALPN).
  SSL_CTX_set_alpn_select_cb(
      c,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
         void*) -> int {
        static const unsigned char kHttp11[] = "\x08http/1.1";
        unsigned char* selected = nullptr;
        if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11 - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
          return SSL_TLSEXT_ERR_NOACK;
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
  leaves_[name] = Leaf{ctx, now};
  return ctx;
}

}  // namespace brig::egress
