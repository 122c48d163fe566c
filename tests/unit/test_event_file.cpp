// TensorBoard event files (io/event_file.h): CRC-32C against its standard check values, the
// TFRecord framing byte by byte, the tags records map to, and a full disk named. The files a run
// writes are read back by an independent reader in tests/integration (read_tfevents.py).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "test_util.h"
#include <gtest/gtest.h>

#include <ocl/io/event_file.h>
#include <ocl/io/files.h>

namespace {

using ocl::io::crc32c;
using ocl::io::tensorboard_tag;

uint32_t le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

TEST(EventFile, Crc32cMatchesTheStandardCheckValues) {
  // RFC 3720 (iSCSI) B.4 and the CRC catalogue's check value for CRC-32C.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  // Continuing a CRC over a second part gives the CRC of the whole.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
}

TEST(EventFile, TfrecordFramesThePayloadWithMaskedCrcs) {
  const std::string payload = "hello";
  const std::string r = ocl::io::tfrecord(payload);
  ASSERT_EQ(r.size(), 8 + 4 + payload.size() + 4);
  EXPECT_EQ(r.substr(0, 8), std::string("\x05\0\0\0\0\0\0\0", 8));  // little-endian length
  auto masked = [](const std::string& s) {
    const uint32_t c = crc32c(s.data(), s.size());
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
  };
  EXPECT_EQ(le32(r, 8), masked(r.substr(0, 8)));
  EXPECT_EQ(r.substr(12, payload.size()), payload);
  EXPECT_EQ(le32(r, 12 + payload.size()), masked(payload));
  EXPECT_EQ(ocl::io::masked_crc32c(payload.data(), payload.size()), masked(payload));
}

TEST(EventFile, RecordsMapToTensorBoardsGroups) {
  EXPECT_EQ(tensorboard_tag("step", "loss"), "train/loss");
  EXPECT_EQ(tensorboard_tag("finetune_step", "lr"), "train/lr");
  EXPECT_EQ(tensorboard_tag("step", "global_step"), "");
  EXPECT_EQ(tensorboard_tag("epoch", "epoch"), "");
  EXPECT_EQ(tensorboard_tag("epoch", "loss"), "epoch/loss");
  EXPECT_EQ(tensorboard_tag("finetune_epoch", "top1"), "eval/top1");
  EXPECT_EQ(tensorboard_tag("linprobe_epoch", "best_top1"), "eval/best_top1");
  EXPECT_EQ(tensorboard_tag("knn", "knn_top1"), "knn/top1");
  EXPECT_EQ(tensorboard_tag("epoch", "knn_top1"), "");  // the knn record holds it
  EXPECT_EQ(tensorboard_tag("shortcut", "accuracy"), "shortcut/accuracy");
}

// The event file's and metrics.jsonl's writes go through append_whole: on a full disk it says
// why and leaves the file as it was.
TEST(EventFile, AFullDiskIsReportedByTheWholeRecordAppend) {
  const int fd = ::open("/dev/full", O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ocl::io::append_whole(fd, "a record\n"), "No space left on device");
  ::close(fd);
  const auto dir = ocl::test::make_temp_dir("ocl_append_");
  const int ok = ::open((dir + "/f").c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  ASSERT_GE(ok, 0);
  EXPECT_EQ(ocl::io::append_whole(ok, "one\n"), "");
  EXPECT_EQ(ocl::io::append_whole(ok, "two\n"), "");
  ::close(ok);
  EXPECT_EQ(ocl::test::read_file(dir + "/f"), "one\ntwo\n");
}

TEST(EventFile, AFolderThatCannotTakeTheFileIsNamed) {
  try {
    ocl::io::EventFileWriter writer("/nonexistent/folder");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create '/nonexistent/folder/events.out.tfevents."),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
