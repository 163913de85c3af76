#include "sys/seqpacket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace brig::sys {
namespace {

TEST(SeqPacket, CarriesDataAndFdsWithCloexec) {
  auto pair = seqpacket_pair();
  ASSERT_TRUE(pair);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  int fds[] = {p[0], p[1]};
  ASSERT_TRUE(send_packet(pair->first.get(), "hello", fds));
  auto got = recv_packet(pair->second.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->data, "hello");
  ASSERT_EQ(got->fds.size(), 2u);
  for (auto& fd : got->fds) EXPECT_TRUE(fcntl(fd.get(), F_GETFD) & FD_CLOEXEC);
  close(p[0]);
  close(p[1]);
}

TEST(SeqPacket, EmptyMessageIsNotEof) {
  auto pair = seqpacket_pair();
  ASSERT_TRUE(send_packet(pair->first.get(), ""));
  auto got = recv_packet(pair->second.get());
  ASSERT_TRUE(got) << got.error().message();
}

TEST(SeqPacket, PeerCloseIsNotFound) {
  auto pair = seqpacket_pair();
  pair->first.reset();
  auto got = recv_packet(pair->second.get());
  ASSERT_FALSE(got);
  EXPECT_TRUE(got.error().is(errc::not_found));
}

TEST(SeqPacket, OversizeRefusedBeforeSending) {
  auto pair = seqpacket_pair();
  std::string big(kMaxMessageBytes + 1, 'x');
  auto r = send_packet(pair->first.get(), big);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::limit_exceeded));
}

}  // namespace
}  // namespace brig::sys
