// Sandbox disk images (isolate/disk.h, sandbox/disks.h): a blank image holds almost nothing of
// the host's disk, a copy keeps its holes and its bytes, and the store refuses what it must.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "base/util.h"
#include "isolate/disk.h"
#include "sandbox/disks.h"

namespace brig {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/brig-disk-test-XXXXXX";
    path = ::mkdtemp(tmpl);
    ::chmod(path.c_str(), 0700);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Disk, CopyOfASparseFileKeepsItsBytesAndItsHoles) {
  TempDir dir;
  const std::string from = dir.path + "/from", to = dir.path + "/to";
  {
    int fd = ::open(from.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 64 << 20), 0);
    ASSERT_EQ(::pwrite(fd, "head", 4, 0), 4);
    ASSERT_EQ(::pwrite(fd, "middle", 6, 20 << 20), 6);
    ASSERT_EQ(::pwrite(fd, "tail", 4, (64 << 20) - 4), 4);
    ::close(fd);
  }
  ASSERT_TRUE(isolate::copy_sparse_file(from, to));
  EXPECT_EQ(std::filesystem::file_size(to), 64u << 20);
  EXPECT_TRUE(slurp(from) == slurp(to)) << "the copy's bytes differ";
  EXPECT_LT(isolate::allocated_bytes(to), 1u << 20) << "the holes were filled in";
  struct stat st;
  ASSERT_EQ(::stat(to.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Never over an existing file, never through a symlink.
  EXPECT_FALSE(isolate::copy_sparse_file(from, to));
  std::filesystem::create_symlink(from, dir.path + "/link");
  EXPECT_FALSE(isolate::copy_sparse_file(dir.path + "/link", dir.path + "/other"));
}

TEST(Disk, BlankImageIsAnExt4FilesystemThatHoldsAlmostNothing) {
  if (::access("/sbin/mkfs.ext4", X_OK) != 0 && ::access("/usr/sbin/mkfs.ext4", X_OK) != 0)
    GTEST_SKIP() << "no mkfs.ext4 (e2fsprogs)";
  TempDir dir;
  auto disks = sandbox::DiskImages::open(dir.path + "/disks", 0);
  ASSERT_TRUE(disks) << disks.error().message();
  const std::string id = new_sandbox_id();
  auto path = (*disks)->create(id, 10ull << 30);
  ASSERT_TRUE(path) << path.error().message();
  EXPECT_EQ(*path, (*disks)->path_of(id));
  EXPECT_EQ(std::filesystem::file_size(*path), 10ull << 30);
  EXPECT_LT((*disks)->used_bytes(id), 2u << 20) << "a 10 GiB disk should hold a few hundred KiB of the host's disk";
  // The ext4 superblock's magic (0xEF53 at 1024 + 56).
  std::ifstream in(*path, std::ios::binary);
  in.seekg(1024 + 56);
  unsigned char magic[2] = {};
  in.read(reinterpret_cast<char*>(magic), 2);
  EXPECT_EQ(magic[0], 0x53);
  EXPECT_EQ(magic[1], 0xEF);
  EXPECT_EQ((*disks)->list(), std::vector<std::string>{id});
  // A second disk of the size is a copy of the same blank: no mkfs, same bytes.
  const std::string other = new_sandbox_id();
  ASSERT_TRUE((*disks)->create(other, 10ull << 30));
  EXPECT_EQ(std::filesystem::directory_iterator(dir.path + "/disks/blank")->path().filename(),
            "ext4-4k-" + std::to_string(10ull << 30) + ".img");
  (*disks)->remove(id);
  (*disks)->remove(other);
  EXPECT_TRUE((*disks)->list().empty());
  EXPECT_FALSE((*disks)->create("../escape", 1 << 30)) << "an id that is not one";
}

TEST(Disk, CreatesAreRefusedBelowTheHostReserve) {
  TempDir dir;
  // A reserve no host has: the create fails as unavailable (503), before any file is made.
  auto disks = sandbox::DiskImages::open(dir.path + "/disks", uint64_t{1} << 60);
  ASSERT_TRUE(disks);
  auto r = (*disks)->create(new_sandbox_id(), 1 << 30);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::unavailable)) << r.error().message();
  EXPECT_NE(r.error().message().find("host_disk_reserve_mib"), std::string::npos) << r.error().message();
  EXPECT_TRUE((*disks)->list().empty());
}

TEST(Disk, TheStoreWantsARootOnlyDirectory) {
  TempDir dir;
  const std::string open_dir = dir.path + "/open";
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (the directory must be root's)";
  auto disks = sandbox::DiskImages::open(open_dir, 0);
  EXPECT_FALSE(disks) << "a world-writable disks directory was accepted";
}

}  // namespace
}  // namespace brig
