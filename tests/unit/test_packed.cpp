// The packed data set format: round trips (raw exactly, JPEG within its error), shards rolled at
// the size bound, every corruption named (truncated shard, flipped payload byte, bad or
// mismatched index), undecodable records counted as bad samples, a writer interrupted and
// resumed giving the pack an uninterrupted writer gives, and two ranks' loaders taking disjoint
// shares that cover a pack.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/image_folder.h>
#include <ocl/data/loader.h>
#include <ocl/data/packed.h>
#include <ocl/data/synthetic.h>

namespace {

using ocl::data::Image;
using ocl::data::PackedDataset;
using ocl::data::PackEncoding;
using ocl::data::PackWriter;
using ocl::data::PackWriterOptions;

std::string make_pack_dir(const std::string& name) {
  return ocl::test::make_temp_dir("ocl_packed_" + name + "_");
}

// Synthetic images of a few sizes (the generator's structure survives JPEG).
Image sample_image(int i) {
  ocl::data::SyntheticOptions o;
  o.size = 16;
  o.num_classes = 10;
  o.image_size = 24 + 8 * (i % 3);
  ocl::data::SyntheticDataset set(o);
  auto image = set.load(i).value();
  return image;
}

const std::vector<std::string> kClasses = {"cat", "dog", "fish"};

int32_t label_of(int i) { return i % 3; }

void write_pack(const std::string& folder, PackEncoding encoding, int n, uint64_t shard_bytes,
                int stop_after = -1, bool resume = false) {
  PackWriterOptions o;
  o.encoding = encoding;
  o.max_shard_bytes = shard_bytes;
  o.description = std::string("test ") + ocl::data::pack_encoding_name(encoding);
  PackWriter writer(folder, kClasses, o, resume);
  for (int i = static_cast<int>(writer.next_source()); i < n; ++i) {
    if (i == stop_after) return;  // the writer goes out of scope unfinished, as if killed
    const Image image = sample_image(i);
    if (encoding == PackEncoding::Raw) {
      writer.add(image.pixels.data(), image.pixels.size(), label_of(i), image.height, image.width);
    } else {
      const auto jpeg = ocl::data::encode_jpeg(image, 95);
      writer.add(jpeg.data(), jpeg.size(), label_of(i), image.height, image.width);
    }
  }
  writer.finish();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

template <typename F>
std::string pack_error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Packed, RawRoundTripIsExactAcrossShards) {
  const auto dir = make_pack_dir("raw");
  // Images of 1,728 to 3,072 bytes and shards of at most 8 KiB: several shards.
  write_pack(dir, PackEncoding::Raw, 12, 8192);
  PackedDataset pack(dir);
  ASSERT_EQ(pack.size(), 12);
  EXPECT_EQ(pack.class_names(), kClasses);
  EXPECT_EQ(pack.encoding(), PackEncoding::Raw);
  EXPECT_GE(pack.record(11).shard, 3u);
  for (int i = 0; i < 12; ++i) {
    const Image want = sample_image(i);
    const auto got = pack.load(i);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(got->height, want.height);
    EXPECT_EQ(got->width, want.width);
    EXPECT_EQ(got->pixels, want.pixels) << i;
    EXPECT_EQ(pack.label(i), label_of(i));
  }
  EXPECT_NE(pack.describe().find("packed (raw)"), std::string::npos) << pack.describe();
  EXPECT_THROW(pack.load(12), std::out_of_range);
}

TEST(Packed, JpegRoundTripIsWithinJpegError) {
  const auto dir = make_pack_dir("jpeg");
  write_pack(dir, PackEncoding::Jpeg, 6, 1 << 20);
  PackedDataset pack(dir);
  ASSERT_EQ(pack.size(), 6);
  for (int i = 0; i < 6; ++i) {
    const Image want = sample_image(i);
    const auto got = pack.load(i);
    ASSERT_TRUE(got.has_value()) << i;
    ASSERT_EQ(got->pixels.size(), want.pixels.size());
    double diff = 0;
    for (size_t k = 0; k < want.pixels.size(); ++k)
      diff += std::abs(static_cast<int>(got->pixels[k]) - static_cast<int>(want.pixels[k]));
    // Quality 95 with 4:2:0 chroma on these small, busy images: a mean error of about 6 grey
    // levels (measured 5.0–6.8).
    EXPECT_LT(diff / want.pixels.size(), 10.0) << i;
    EXPECT_EQ(pack.label(i), label_of(i));
  }
}

// Flat red, green and blue bands survive JPEG in their places: the channel order is RGB both ways.
TEST(Packed, JpegKeepsTheChannelOrder) {
  Image image;
  image.height = 16;
  image.width = 48;
  image.pixels.assign(16 * 48 * 3, 0);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 48; ++x) image.pixels[(static_cast<size_t>(y) * 48 + x) * 3 + x / 16] = 255;
  const auto jpeg = ocl::data::encode_jpeg(image, 95);
  const auto back = ocl::data::decode_image(jpeg.data(), jpeg.size()).value();
  for (int band = 0; band < 3; ++band) {
    const uint8_t* px = back.pixels.data() + (static_cast<size_t>(8) * 48 + 16 * band + 8) * 3;
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(px[c], c == band ? 255 : 0, 12) << band << " " << c;
  }
}

TEST(Packed, ShrinkKeepsTheAspectAndLeavesSmallImagesAlone) {
  Image image;
  image.height = 300;
  image.width = 500;
  image.pixels.assign(300 * 500 * 3, 77);
  const Image small = ocl::data::shrink_to_short_side(image, 256, ocl::data::Interpolation::Area);
  EXPECT_EQ(small.height, 256);
  EXPECT_EQ(small.width, 427);  // 500 · 256 / 300 = 426.7
  EXPECT_EQ(small.pixels[0], 77);
  const Image same = ocl::data::shrink_to_short_side(small, 256, ocl::data::Interpolation::Area);
  EXPECT_EQ(same.width, 427);
}

TEST(Packed, TruncatedShardNamesTheShardAndTheFirstRecordLost) {
  const auto dir = make_pack_dir("truncated");
  write_pack(dir, PackEncoding::Raw, 12, 8192);
  PackedDataset whole(dir);
  const uint32_t last = whole.record(11).shard;
  const std::string shard = ocl::data::pack_shard_path(dir, last);
  const std::string bytes = read_bytes(shard);
  write_bytes(shard, bytes.substr(0, bytes.size() - 10));
  const std::string e = pack_error_of([&] { PackedDataset pack(dir); });
  EXPECT_NE(e.find("shard-0000" + std::to_string(last) + ".bin"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated, from record 11 on"), std::string::npos) << e;
}

TEST(Packed, FlippedPayloadByteIsACorruptRecord) {
  const auto dir = make_pack_dir("flipped");
  write_pack(dir, PackEncoding::Raw, 12, 8192);
  uint64_t offset = 0;
  uint32_t shard = 0;
  {
    PackedDataset pack(dir);
    offset = pack.record(4).offset;
    shard = pack.record(4).shard;
  }
  const std::string path = ocl::data::pack_shard_path(dir, shard);
  std::string bytes = read_bytes(path);
  bytes[offset + 5] = static_cast<char>(bytes[offset + 5] ^ 0x10);
  write_bytes(path, bytes);
  PackedDataset pack(dir);
  EXPECT_TRUE(pack.load(3).has_value());
  const std::string e = pack_error_of([&] { pack.load(4); });
  EXPECT_NE(e.find("record 4 in shard-0000" + std::to_string(shard) + ".bin is corrupt"),
            std::string::npos)
      << e;
}

TEST(Packed, BadIndexIsNamed) {
  const auto dir = make_pack_dir("index");
  write_pack(dir, PackEncoding::Raw, 5, 1 << 20);
  const std::string index = ocl::data::pack_index_path(dir);
  const std::string good = read_bytes(index);

  std::string flipped = good;
  flipped[40] = static_cast<char>(flipped[40] ^ 1);
  write_bytes(index, flipped);
  EXPECT_NE(pack_error_of([&] { PackedDataset p(dir); }).find("checksum mismatch"),
            std::string::npos);

  write_bytes(index, good.substr(0, good.size() - 20));
  EXPECT_NE(pack_error_of([&] { PackedDataset p(dir); }).find("truncated"), std::string::npos);

  write_bytes(index, "not a pack");
  EXPECT_NE(pack_error_of([&] { PackedDataset p(dir); }).find("not an ocl pack index"),
            std::string::npos);

  // Another pack's index beside these shards: the sizes disagree.
  const auto other = make_pack_dir("other");
  write_pack(other, PackEncoding::Raw, 3, 1 << 20);
  write_bytes(index, read_bytes(ocl::data::pack_index_path(other)));
  EXPECT_NE(pack_error_of([&] { PackedDataset p(dir); }).find("do not belong together"),
            std::string::npos);

  std::remove(index.c_str());
  EXPECT_NE(pack_error_of([&] { PackedDataset p(dir); }).find("no index.ocl"), std::string::npos);
}

// A record count of 2^59 + 5 makes records · 32 wrap around to the size of 5 records: refused as a
// size mismatch, not a 2^59-record vector (found by fuzz/pack_fuzz.cpp).
TEST(Packed, RecordCountThatWrapsAroundIsRefused) {
  const auto dir = make_pack_dir("wrap");
  write_pack(dir, PackEncoding::Raw, 5, 1 << 20);
  const std::string index = ocl::data::pack_index_path(dir);
  std::string bytes = read_bytes(index);
  const uint64_t records = (uint64_t{1} << 59) + 5;  // header: magic, version, encoding, records
  for (int i = 0; i < 8; ++i) bytes[16 + i] = static_cast<char>((records >> (8 * i)) & 0xff);
  const size_t body = bytes.size() - 12;  // then the CRC-32 of the body and the end marker
  const uint32_t crc = ocl::data::pack_crc32(reinterpret_cast<const uint8_t*>(bytes.data()), body);
  for (int i = 0; i < 4; ++i) bytes[body + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  write_bytes(index, bytes);
  const std::string error = pack_error_of([&] { PackedDataset p(dir); });
  EXPECT_NE(error.find("size does not match"), std::string::npos) << error;
  EXPECT_NE(error.find(std::to_string(records) + " records"), std::string::npos) << error;
}

// A raw record of 0 x 0 pixels in 0 bytes passes the raw size check; PackWriter never writes
// one, and the reader refuses it when the pack is opened rather than hand out an empty image.
TEST(Packed, RecordWithoutPixelsIsRefused) {
  const auto dir = make_pack_dir("nopixels");
  write_pack(dir, PackEncoding::Raw, 5, 1 << 20);
  const std::string index = ocl::data::pack_index_path(dir);
  std::string bytes = read_bytes(index);
  const size_t body = bytes.size() - 12;  // the CRC-32 of the body and the end marker follow
  const size_t record = body - 5 * 32;    // the 5 records of 32 bytes end the body
  auto put = [&](size_t at, uint32_t v, int n) {
    for (int i = 0; i < n; ++i) bytes[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  put(record + 4, 0, 4);   // size
  put(record + 20, 0, 2);  // height
  put(record + 22, 0, 2);  // width
  put(body, ocl::data::pack_crc32(reinterpret_cast<const uint8_t*>(bytes.data()), body), 4);
  write_bytes(index, bytes);
  const std::string error = pack_error_of([&] { PackedDataset p(dir); });
  EXPECT_NE(error.find("record 0 holds an image of 0 x 0 pixels in 0 bytes"), std::string::npos)
      << error;
}

// Another pack's index that promises more bytes than these shards hold: not a truncation (the
// records before the cut would match their checksums), so it is named as a mismatch.
TEST(Packed, LargerForeignIndexIsAMismatchNotATruncation) {
  const auto dir = make_pack_dir("small_jpeg");
  write_pack(dir, PackEncoding::Jpeg, 5, 1 << 20);
  const auto other = make_pack_dir("large_raw");
  write_pack(other, PackEncoding::Raw, 12, 1 << 20);
  ASSERT_GT(read_bytes(ocl::data::pack_shard_path(other, 0)).size(),
            read_bytes(ocl::data::pack_shard_path(dir, 0)).size());
  write_bytes(ocl::data::pack_index_path(dir), read_bytes(ocl::data::pack_index_path(other)));
  const std::string e = pack_error_of([&] { PackedDataset p(dir); });
  EXPECT_NE(e.find("do not belong together"), std::string::npos) << e;
  EXPECT_EQ(e.find("truncated"), std::string::npos) << e;
}

TEST(Packed, UndecodableRecordIsABadSample) {
  const auto dir = make_pack_dir("undecodable");
  PackWriterOptions o;
  PackWriter writer(dir, kClasses, o);
  const auto jpeg = ocl::data::encode_jpeg(sample_image(0), 90);
  const std::string junk = "this is not a JPEG at all";
  writer.add(jpeg.data(), jpeg.size(), 0, 24, 24);
  writer.add(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), 1, 24, 24);
  writer.finish();
  PackedDataset pack(dir);
  EXPECT_TRUE(pack.load(0).has_value());
  ocl::data::BadSample bad;
  EXPECT_FALSE(pack.load(1, &bad).has_value());
  EXPECT_EQ(bad.index, 1);
  EXPECT_NE(bad.path.find("shard-00000.bin record 1"), std::string::npos) << bad.path;
  EXPECT_FALSE(bad.reason.empty());
}

TEST(Packed, InterruptedWriterResumesWithoutDuplicates) {
  const auto whole = make_pack_dir("whole");
  write_pack(whole, PackEncoding::Raw, 12, 8192);
  const auto dir = make_pack_dir("resumed");
  write_pack(dir, PackEncoding::Raw, 12, 8192, /*stop_after=*/9);
  EXPECT_TRUE(std::ifstream(ocl::data::pack_progress_path(dir)).good());
  EXPECT_NE(pack_error_of([&] { PackedDataset p(dir); }).find("did not finish"), std::string::npos);
  // Without resume the folder is refused; with other options too.
  EXPECT_NE(pack_error_of([&] {
              PackWriter w(dir, kClasses, PackWriterOptions{});
            }).find("holds a pack in progress"),
            std::string::npos);
  PackWriterOptions other;
  other.encoding = PackEncoding::Raw;
  other.max_shard_bytes = 8192;
  other.description = "quality 50";
  EXPECT_NE(
      pack_error_of([&] { PackWriter w(dir, kClasses, other, true); }).find("was started with"),
      std::string::npos);
  write_pack(dir, PackEncoding::Raw, 12, 8192, -1, /*resume=*/true);
  EXPECT_FALSE(std::ifstream(ocl::data::pack_progress_path(dir)).good());
  EXPECT_EQ(read_bytes(ocl::data::pack_index_path(dir)),
            read_bytes(ocl::data::pack_index_path(whole)));
  PackedDataset a(whole), b(dir);
  ASSERT_EQ(b.size(), 12);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(a.load(i)->pixels, b.load(i)->pixels) << i;
  // A finished pack is never overwritten.
  EXPECT_NE(pack_error_of([&] {
              PackWriter w(dir, kClasses, PackWriterOptions{});
            }).find("already holds a finished pack"),
            std::string::npos);
}

// Two ranks' loaders over one pack: disjoint shares that cover it, each image the record asked
// for (its pixels carry its index).
TEST(Packed, RankSharesAreDisjointAndCoverThePack) {
  const auto dir = make_pack_dir("ranks");
  {
    PackWriterOptions o;
    o.encoding = PackEncoding::Raw;
    o.max_shard_bytes = 600;  // 192-byte images: three to a shard
    PackWriter writer(dir, kClasses, o);
    for (int i = 0; i < 10; ++i) {
      const std::vector<uint8_t> pixels(8 * 8 * 3, static_cast<uint8_t>(10 * i));
      writer.add(pixels.data(), pixels.size(), label_of(i), 8, 8);
    }
    writer.finish();
  }
  auto pack = std::make_shared<PackedDataset>(dir);
  std::vector<int> seen(10, 0);
  for (int64_t rank = 0; rank < 2; ++rank) {
    ocl::data::LoaderOptions o;
    o.batch_size = 5;
    o.workers = 2;
    o.seed = 3;
    o.rank = rank;
    o.world_size = 2;
    ocl::data::Loader loader(pack, nullptr, o);
    loader.start_epoch(0);
    auto batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_FALSE(loader.next().has_value());
    for (int64_t k = 0; k < 5; ++k) {
      const int64_t index = batch->indices[k].item<int64_t>();
      seen[static_cast<size_t>(index)] += 1;
      EXPECT_EQ(batch->images[k].max().item<int64_t>(), 10 * index);
      EXPECT_EQ(batch->images[k].min().item<int64_t>(), 10 * index);
      EXPECT_EQ(batch->labels[k].item<int64_t>(), label_of(static_cast<int>(index)));
    }
  }
  EXPECT_EQ(seen, std::vector<int>(10, 1));
}

}  // namespace
