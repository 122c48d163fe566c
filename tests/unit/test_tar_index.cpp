// ocl::data::index_tar and group_samples: tar archives that Python's tarfile wrote in the pax,
// GNU and ustar formats, read to the same members and offsets tarfile lists
// (scripts/make_tar_fixtures.py), WebDataset's sample rule, and every damaged or unsupported
// archive refused naming the archive and the byte.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>

#include <ocl/data/packed.h>  // pack_crc32: CRC-32 as zlib computes it
#include <ocl/data/tar_index.h>
#include <ocl/data/tar_writer.h>

using ocl::data::group_samples;
using ocl::data::index_tar;
using ocl::data::memory_reader;
using ocl::data::sample_key;
using ocl::data::TarMember;

namespace {

const std::string kDir = std::string(OCL_FIXTURE_DIR) + "/tar/";

std::vector<uint8_t> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<TarMember> index_bytes(const std::vector<uint8_t>& b, const std::string& what = "t") {
  return index_tar(memory_reader(b.data(), b.size()), b.size(), what);
}

// A ustar header block for a member, with a correct checksum unless told otherwise.
std::vector<uint8_t> header(const std::string& name, uint64_t size, char type = '0',
                            const char* magic = "ustar", bool good_checksum = true) {
  std::vector<uint8_t> h(512, 0);
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(reinterpret_cast<char*>(h.data() + 100), 8, "%07o", 0644);
  std::snprintf(reinterpret_cast<char*>(h.data() + 124), 12, "%011llo",
                static_cast<unsigned long long>(size));
  std::snprintf(reinterpret_cast<char*>(h.data() + 136), 12, "%011o", 1700000000);
  h[156] = static_cast<uint8_t>(type);
  std::memcpy(h.data() + 257, magic, std::strlen(magic));
  if (std::strcmp(magic, "ustar") == 0) std::memcpy(h.data() + 263, "00", 2);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (uint8_t b : h) sum += b;
  if (!good_checksum) sum += 1;
  std::snprintf(reinterpret_cast<char*>(h.data() + 148), 8, "%06o", sum);
  return h;
}

// A member: its header, then its data padded to whole blocks.
void append_member(std::vector<uint8_t>* tar, const std::string& name, const std::string& data,
                   char type = '0') {
  auto h = header(name, data.size(), type);
  tar->insert(tar->end(), h.begin(), h.end());
  tar->insert(tar->end(), data.begin(), data.end());
  tar->resize(tar->size() + (512 - data.size() % 512) % 512, 0);
}

void end_archive(std::vector<uint8_t>* tar) { tar->resize(tar->size() + 1024, 0); }

std::string pax_record(const std::string& key, const std::string& value) {
  const std::string body = " " + key + "=" + value + "\n";
  size_t length = body.size() + 1;
  while (std::to_string(length).size() + body.size() != length) ++length;
  return std::to_string(length) + body;
}

}  // namespace

TEST(TarIndex, ReadsWhatPythonsTarfileListsInEveryHeaderFormat) {
  std::ifstream listing(kDir + "index.txt");
  ASSERT_TRUE(listing) << "regenerate with /usr/bin/python3 scripts/make_tar_fixtures.py";
  std::map<std::string, std::vector<TarMember>> expected;
  std::map<std::string, std::vector<uint32_t>> crcs;  // of each member's data, by zlib
  std::string line;
  while (std::getline(listing, line)) {
    std::istringstream in(line);
    std::string archive;
    TarMember m;
    uint32_t crc = 0;
    in >> archive >> m.offset >> m.size >> crc;
    crcs[archive].push_back(crc);
    std::getline(in, m.name);
    m.name.erase(0, 1);  // the space before the path
    expected[archive].push_back(m);
  }
  ASSERT_EQ(expected.size(), 3u);
  for (const auto& [archive, want] : expected) {
    const auto b = bytes_of(kDir + archive);
    const auto got = index_bytes(b, archive);
    ASSERT_EQ(got.size(), want.size()) << archive;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i].name) << archive << " member " << i;
      EXPECT_EQ(got[i].offset, want[i].offset) << archive << " " << want[i].name;
      EXPECT_EQ(got[i].size, want[i].size) << archive << " " << want[i].name;
      // The bytes at the offset read are the member's (tarfile's extraction, by CRC-32).
      EXPECT_EQ(ocl::data::pack_crc32(b.data() + got[i].offset, got[i].size), crcs[archive][i])
          << archive << " " << want[i].name;
    }
  }
  // The formats' own features were in play: a pax path over 255 bytes, GNU long names, the
  // ustar prefix.
  EXPECT_GT(expected["pax.tar"][2].name.size(), 255u);
  EXPECT_GT(expected["gnu.tar"][0].name.size(), 100u);
  EXPECT_GT(expected["ustar.tar"][0].name.size(), 100u);
}

TEST(TarIndex, ReadsThroughAFileDescriptorAsFromMemory) {
  const std::string path = kDir + "pax.tar";
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const auto b = bytes_of(path);
  const auto from_file = index_tar(ocl::data::file_reader(fd, path), b.size(), path);
  ::close(fd);
  const auto from_memory = index_bytes(b);
  ASSERT_EQ(from_file.size(), from_memory.size());
  for (size_t i = 0; i < from_file.size(); ++i) {
    EXPECT_EQ(from_file[i].name, from_memory[i].name);
    EXPECT_EQ(from_file[i].offset, from_memory[i].offset);
  }
}

TEST(TarIndex, SampleKeysFollowWebDatasetsRule) {
  EXPECT_EQ(sample_key("a/b.c/n01.x.JPG"),
            std::make_pair(std::string("a/b.c/n01"), std::string("x.jpg")));
  EXPECT_EQ(sample_key("n01/0001.jpg"),
            std::make_pair(std::string("n01/0001"), std::string("jpg")));
  EXPECT_EQ(sample_key("README"), std::make_pair(std::string("README"), std::string("")));
  EXPECT_EQ(sample_key(".hidden"), std::make_pair(std::string(""), std::string("hidden")));
}

TEST(TarIndex, GroupsConsecutiveMembersIntoSamples) {
  const auto b = bytes_of(kDir + "gnu.tar");
  const auto samples = group_samples(index_bytes(b), "gnu.tar");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].key, std::string(120, 'g') + "/0000");
  EXPECT_EQ(samples[0].parts.at("jpg"), 0u);
  EXPECT_EQ(samples[0].parts.at("cls"), 1u);
  EXPECT_EQ(samples[1].key, "short/0001");
  EXPECT_EQ(samples[1].parts.at("jpeg"), 2u);  // extensions are lower-cased
}

TEST(TarIndex, SamplesThatBreakTheLayoutAreNamed) {
  auto m = [](const std::string& name) { return TarMember{name, 0, 1}; };
  OCL_EXPECT_THROW_WITH(group_samples({m("a/1.jpg"), m("a/1.cls"), m("a/1.jpg")}, "s.tar"),
                        "s.tar: two members named 'a/1.jpg' in sample 'a/1'");
  OCL_EXPECT_THROW_WITH(group_samples({m("a/1.jpg"), m("a/2.jpg"), m("a/1.cls")}, "s.tar"),
                        "s.tar: key 'a/1' comes back at member 'a/1.cls' after other samples");
  OCL_EXPECT_THROW_WITH(group_samples({m("a/1.jpg"), m("a/LICENSE")}, "s.tar"),
                        "s.tar: member 'a/LICENSE' has no extension");
}

TEST(TarIndex, ATruncatedArchiveIsNamedWithTheByte) {
  const auto whole = bytes_of(kDir + "pax.tar");
  // Cut inside the second member's data, and inside a header.
  std::vector<uint8_t> cut(whole.begin(), whole.begin() + 4608 + 100);
  OCL_EXPECT_THROW_WITH(index_bytes(cut, "cut.tar"), "runs past the end of the archive");
  OCL_EXPECT_THROW_WITH(index_bytes(cut, "cut.tar"), "it is truncated");
  std::vector<uint8_t> in_header(whole.begin(), whole.begin() + 1536 + 200);
  OCL_EXPECT_THROW_WITH(index_bytes(in_header, "cut.tar"),
                        "cut.tar, byte 1536: the archive ends inside a header");
  // Cut after the first member's 513 bytes, inside the padding to its block.
  std::vector<uint8_t> in_padding(whole.begin(), whole.begin() + 1224);
  OCL_EXPECT_THROW_WITH(index_bytes(in_padding, "cut.tar"),
                        "cut.tar, byte 0: member 'n01/0000.jpg' (513 bytes) runs past the end");
  // Whole members and no end marker read as the members there are, `ended` saying so.
  std::vector<uint8_t> tar;
  append_member(&tar, "a/1.jpg", "xyz");
  bool ended = true;
  EXPECT_EQ(index_tar(memory_reader(tar.data(), tar.size()), tar.size(), "t", &ended).size(), 1u);
  EXPECT_FALSE(ended);
  end_archive(&tar);
  index_tar(memory_reader(tar.data(), tar.size()), tar.size(), "t", &ended);
  EXPECT_TRUE(ended);
  // An extended header with nothing after it.
  std::vector<uint8_t> pax_only;
  append_member(&pax_only, "PaxHeader/1", pax_record("path", "a/long.jpg"), 'x');
  OCL_EXPECT_THROW_WITH(index_bytes(pax_only, "p.tar"),
                        "p.tar: the archive ends after an extended header");
}

TEST(TarIndex, HeadersThatAreNotUstarGnuOrPaxAreRefused) {
  std::vector<uint8_t> v7 = header("a/1.jpg", 3, '0', "");
  v7.resize(1024, 0);
  OCL_EXPECT_THROW_WITH(index_bytes(v7, "v7.tar"),
                        "v7.tar, byte 0: a tar header that is not ustar, GNU or pax");
  std::vector<uint8_t> bad = header("a/1.jpg", 3, '0', "ustar", /*good_checksum=*/false);
  bad.resize(1024, 0);
  OCL_EXPECT_THROW_WITH(index_bytes(bad, "b.tar"),
                        "b.tar, byte 0: not a tar header (its checksum does not match)");
  std::vector<uint8_t> noise(2048);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>(i * 37 + 11);
  OCL_EXPECT_THROW_WITH(index_bytes(noise, "n.tar"), "n.tar, byte 0: not a tar header");
  // The second member's header is the bad one: its offset is named.
  std::vector<uint8_t> second;
  append_member(&second, "a/1.jpg", "xyz");
  auto h = header("a/2.jpg", 3, '0', "ustar", false);
  second.insert(second.end(), h.begin(), h.end());
  second.resize(second.size() + 1024, 0);
  OCL_EXPECT_THROW_WITH(index_bytes(second, "s.tar"), "s.tar, byte 1024: not a tar header");
}

// Issue 43: a compressed archive read as "not a tar header".
TEST(TarIndex, ACompressedArchiveIsNamedAsSuch) {
  const std::vector<uint8_t> gz = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 'j', 'u', 'n', 'k'};
  OCL_EXPECT_THROW_WITH(index_bytes(gz, "s.tar.gz"),
                        "s.tar.gz: gzip-compressed, not a tar archive");
  OCL_EXPECT_THROW_WITH(index_bytes(gz, "s.tar.gz"), "gunzip -k");
  std::vector<uint8_t> zst = {0x28, 0xb5, 0x2f, 0xfd, 4, 0};
  zst.resize(2048, 'z');
  OCL_EXPECT_THROW_WITH(index_bytes(zst, "s.tar.zst"), "s.tar.zst: zstd-compressed");
}

TEST(TarIndex, BytesQuotedInAMessageArePrintableAndBounded) {
  EXPECT_EQ(ocl::data::printable("a/caf\xc3\xa9.jpg"), "a/caf\xc3\xa9.jpg");  // UTF-8 kept
  EXPECT_EQ(ocl::data::printable("a\x01\n\xff\xc3"), "a\\x01\\x0a\\xff\\xc3");
  EXPECT_EQ(ocl::data::printable(std::string(1000, 'n'), 4), "nnnn... (1000 bytes)");
}

TEST(TarIndex, PaxRecordsRenameAndResizeTheNextMemberOnly) {
  std::vector<uint8_t> tar;
  const std::string long_name = std::string(300, 'p') + "/0.jpg";
  append_member(&tar, "PaxHeader/0", pax_record("mtime", "1.5") + pax_record("path", long_name),
                'x');
  append_member(&tar, "truncated-name", "abcd");
  append_member(&tar, "b/1.jpg", "ef");
  end_archive(&tar);
  const auto members = index_bytes(tar);
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].name, long_name);
  EXPECT_EQ(members[0].size, 4u);
  EXPECT_EQ(std::string(tar.begin() + members[0].offset, tar.begin() + members[0].offset + 4),
            "abcd");
  EXPECT_EQ(members[1].name, "b/1.jpg");

  std::vector<uint8_t> malformed;
  append_member(&malformed, "PaxHeader/0", "12 path=ab\n", 'x');  // the length is wrong
  append_member(&malformed, "a.jpg", "x");
  end_archive(&malformed);
  OCL_EXPECT_THROW_WITH(index_bytes(malformed, "m.tar"),
                        "m.tar, byte 0: malformed pax record at byte 0");
  std::vector<uint8_t> global;
  append_member(&global, "GlobalHead", pax_record("path", "x.jpg"), 'g');
  append_member(&global, "a.jpg", "x");
  end_archive(&global);
  OCL_EXPECT_THROW_WITH(index_bytes(global, "g.tar"),
                        "g.tar, byte 0: a global pax header sets 'path'");
  std::vector<uint8_t> bad_size;
  append_member(&bad_size, "PaxHeader/0", pax_record("size", "12x"), 'x');
  append_member(&bad_size, "a.jpg", "x");
  end_archive(&bad_size);
  OCL_EXPECT_THROW_WITH(index_bytes(bad_size, "z.tar"), "pax size '12x' is not a size");
}

// ocl_pack's shards: what TarBuilder writes, Python's tarfile lists (names, data offsets, sizes),
// and index_tar reads the same.
TEST(TarIndex, TheBuildersArchivesReadTheSameInPythonsTarfile) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  ocl::data::TarBuilder builder(1700000000);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"n01/000000.jpg", std::string(700, 'a')},
      {"n01/000000.cls", "3"},
      {std::string(180, 'l') + "/000001.jpg", std::string(512, 'b')},
      {"caf\xc3\xa9/000002.png", ""},
  };
  for (const auto& [name, data] : files)
    builder.add(name, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  const std::string tar = builder.finish();
  const std::string dir = ocl::test::make_temp_dir("ocl_tar_builder_");
  std::ofstream(dir + "/b.tar", std::ios::binary) << tar;
  std::string listing;
  ASSERT_EQ(ocl::test::run_exe("/usr/bin/python3",
                               "-c 'import sys, tarfile\n"
                               "for m in tarfile.open(sys.argv[1]).getmembers():\n"
                               "    print(m.offset_data, m.size, m.name)' " +
                                   dir + "/b.tar",
                               &listing),
            0)
      << listing;
  const auto members = index_bytes(std::vector<uint8_t>(tar.begin(), tar.end()));
  ASSERT_EQ(members.size(), files.size());
  std::ostringstream want;
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(members[i].name, files[i].first);
    EXPECT_EQ(std::string(tar, members[i].offset, members[i].size), files[i].second);
    want << members[i].offset << " " << members[i].size << " " << members[i].name << "\n";
  }
  EXPECT_EQ(listing, want.str());
}
