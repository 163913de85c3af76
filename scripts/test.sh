#!/usr/bin/env bash
# Runs brig's whole test suite: installs what is missing, builds, builds (or reuses) the test
# rootfs and template layers under the cache directory (BRIG_CACHE_DIR, default /var/cache/brig),
# then runs each stage and prints one pass/fail line per stage.
# Needs root (the integration and security stages create real sandboxes).
set -uo pipefail
cd "$(dirname "$0")/.."
export CCACHE_DIR=${CCACHE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/ccache}

step() { printf '\n==> %s\n' "$*"; }
fail_setup() { echo "test: setup failed: $*" >&2; exit 1; }

step "dependencies"
./scripts/install-deps.sh || fail_setup "install-deps"
step "test rootfs"
rootfs=$(./scripts/build-test-rootfs.sh) || fail_setup "build-test-rootfs"
echo "rootfs: $rootfs"
step "build"
cmake --preset dev -DBRIG_TEST_ROOTFS="$rootfs" >/dev/null || fail_setup "cmake configure"
cmake --build build || fail_setup "build"

declare -A results
order=()
run_stage() {
  local name=$1
  shift
  step "$name ($(df -h --output=avail . | tail -1 | tr -d ' ') free on disk)"
  order+=("$name")
  if "$@"; then results[$name]=PASS; else results[$name]=FAIL; fi
}
ctest_label() { (cd build && ctest -L "$1" --output-on-failure --timeout 600); }

# No lower layer includes a higher one; in-sandbox code includes no host code (tools/check-layers.sh).
run_stage layers tools/check-layers.sh
run_stage unit ctest_label unit
run_stage integration ctest_label integration
run_stage security ctest_label security
# Builds the four built-in templates on first run (~6 min), then reuses their cached layers.
export BRIG_TEMPLATE_STATE_DIR=${BRIG_TEMPLATE_STATE_DIR:-${BRIG_CACHE_DIR:-/var/cache/brig}/state}
run_stage templates ctest_label templates
# The official e2b SDK (2.51.0 and 2.50.0, pinned in tests/sdk) against a real brig serve.
run_stage sdk tests/sdk/run.sh build/src/brig
# The official E2B Python SDKs (e2b 2.34.0, e2b-code-interpreter 2.9.0, from ../shared/e2b-python).
run_stage sdk-python tests/sdk-python/run.sh build/src/brig
# The MCP server, stdio and HTTP, with the official MCP SDK client, the Inspector CLI and the
# conformance scenarios (pinned in tests/mcp; Node 22 for the last two is cached by node22.sh).
run_stage mcp tests/mcp/run.sh build/src/brig
# The unit and integration tests again, built with AddressSanitizer and UBSan (any report fails
# the test). Left out: the 64 MiB out-of-memory test, which measures brig-init's own memory
# too, and ASan's shadow memory takes brig-init past 64 MiB before the test's process does.
asan_tests() {
  cmake --preset asan-ubsan -DBRIG_TEST_ROOTFS="$rootfs" >/dev/null && cmake --build build-asan &&
    (cd build-asan && ctest -L 'unit|integration' -E 'Cli.RunOutOfMemoryExits137AndSaysSo' --output-on-failure --timeout 600)
}
run_stage asan-ubsan asan_tests
# A sanitizer build takes a few GiB; on a CI machine, where nobody reads it afterwards, it goes
# as soon as its stage has run, so the next one has room to link.
done_with_build() {
  [[ ${CI:-} == true ]] || return 0
  rm -rf "$1"
  echo "disk after removing $1: $(df -h --output=avail . | tail -1 | tr -d ' ') free"
}
done_with_build build-asan
# The daemon-level tests again under ThreadSanitizer: the unit tests of the daemon's components,
# the integration tests (the engine with its warm-pool thread, the CLI) and the e2b SDK suite
# against a TSan-built `brig serve` (its HTTP, envd, process-hub and pool threads under real
# traffic). Every process writes its reports to one directory (log_path); any report fails the
# stage and is printed. tools/tsan.supp lists the third-party false positives, each justified.
# Left out, as in asan-ubsan: the 64 MiB out-of-memory test (TSan's shadow memory of brig-init
# counts against the sandbox's limit before the test's process does). The preset passes
# -Wno-tsan: GCC warns that TSan does not model std::atomic_thread_fence, which Boost.Asio's
# fenced blocks use around handlers; Asio's scheduler hands handlers over under its mutex, which
# TSan does see. brig-init and the kernel host are single-threaded; the zygote starts them with
# an empty environment, so their (TSan-instrumented) runtime keeps its defaults.
tsan_excluded='Cli.RunOutOfMemoryExits137AndSaysSo'
tsan_tests() {
  local reports status
  reports=$(mktemp -d /tmp/brig-tsan-XXXXXX)
  # GCC 12's TSan maps its shadow for at most 28 bits of mmap randomness (LLVM 18 re-execs
  # without ASLR instead); on a kernel with more, the tests run with ASLR off for them alone.
  local run=()
  (($(sysctl -n vm.mmap_rnd_bits 2>/dev/null || echo 28) > 28)) && run=(setarch "$(uname -m)" -R)
  cmake --preset tsan -DBRIG_TEST_ROOTFS="$rootfs" >/dev/null &&
    cmake --build build-tsan --target brig brig-probe brig_unit_tests brig_integration_tests &&
    (export TSAN_OPTIONS="log_path=$reports/report suppressions=$PWD/tools/tsan.supp second_deadlock_stack=1"
     cd build-tsan && "${run[@]}" ctest -L 'unit|integration' -E "$tsan_excluded" \
       --output-on-failure --timeout 1200) &&
    # The e2b SDK suite against a TSan-built brig serve: the daemon's threads under real load.
    (export TSAN_OPTIONS="log_path=$reports/report suppressions=$PWD/tools/tsan.supp second_deadlock_stack=1"
     "${run[@]}" tests/sdk/run.sh build-tsan/src/brig)
  status=$?
  if compgen -G "$reports/report.*" >/dev/null; then
    echo "ThreadSanitizer reports:"
    cat "$reports"/report.*
    status=1
  fi
  rm -rf "$reports"
  return $status
}
run_stage tsan tsan_tests
done_with_build build-tsan

echo
echo "== summary =="
status=0
for name in "${order[@]}"; do
  printf '%-12s %s\n' "$name" "${results[$name]}"
  [[ ${results[$name]} == PASS ]] || status=1
done
if ((status)); then echo "RESULT: FAIL"; else echo "RESULT: PASS"; fi
exit $status
