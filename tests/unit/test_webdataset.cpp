// data.dataset webdataset: shards that Python's tarfile wrote (pax with long names, GNU) read
// to the samples, pixels and labels of the ImageFolder of the same files; ranks and workers
// taking disjoint shares that cover them; a resumed epoch giving the batches of an
// uninterrupted one; the index cached, and built again for a changed shard; the shard spec's
// patterns and lists; and every bad input named.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tar_fixture.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <ocl/data/image_folder.h>
#include <ocl/data/jpeg.h>
#include <ocl/data/loader.h>
#include <ocl/data/png.h>
#include <ocl/data/synthetic.h>
#include <ocl/data/tar_index.h>
#include <ocl/data/webdataset.h>

namespace {

namespace fs = std::filesystem;
using ocl::data::expand_shard_spec;
using ocl::data::Image;
using ocl::data::WebDataset;
using ocl::data::WebDatasetOptions;
using ocl::test::Member;
using ocl::test::shard_image;
using ocl::test::write_tar;

// An ImageFolder of `n` images in three classes under root/train, and the same files as
// WebDataset samples in two shards: a pax one whose member paths pass 255 bytes, a GNU one
// whose paths pass 100. Returns the shard pattern.
struct Fixture {
  std::string root, pattern;
  std::vector<std::string> shards;
};

Fixture make_fixture(const std::string& name, int n = 12) {
  Fixture f;
  f.root = ocl::test::make_temp_dir("ocl_wds_" + name + "_");
  const std::vector<std::string> classes = {"ant", "bee", "cat"};
  const std::string deep = std::string(130, 'd') + "/" + std::string(130, 'e');
  std::vector<std::vector<Member>> members(2);
  for (int c = 0; c < 3; ++c) fs::create_directories(f.root + "/train/" + classes[c]);
  // ImageFolder's order: classes sorted, then file names sorted within each.
  int i = 0;
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < n / 3; ++k, ++i) {
      const bool png = i % 3 == 2;
      const std::string file = "img" + std::to_string(k) + (png ? ".png" : ".jpg");
      const std::string path = f.root + "/train/" + classes[c] + "/" + file;
      const Image image = shard_image(i);
      const auto bytes = png ? ocl::data::encode_png(image) : ocl::data::encode_jpeg(image, 90);
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
      const int shard = i < n / 2 ? 0 : 1;
      const std::string key = (shard == 0 ? deep : std::string(110, 'g')) + "/" + classes[c] +
                              "_img" + std::to_string(k);
      members[shard].push_back({key + (png ? ".png" : ".jpg"), "@" + path});
      members[shard].push_back({key + ".cls", "=" + std::to_string(c)});
    }
  }
  fs::create_directories(f.root + "/shards");
  f.pattern = f.root + "/shards/train-{00..01}.tar";
  f.shards = {f.root + "/shards/train-00.tar", f.root + "/shards/train-01.tar"};
  write_tar(f.shards[0], members[0], "pax");
  write_tar(f.shards[1], members[1], "gnu");
  return f;
}

WebDatasetOptions quiet() {
  WebDatasetOptions o;
  o.progress = false;
  return o;
}

std::vector<ocl::data::TarMember> members_of(const std::string& tar) {
  std::ifstream in(tar, std::ios::binary);
  const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
  return ocl::data::index_tar(ocl::data::memory_reader(bytes.data(), bytes.size()), bytes.size(),
                              tar);
}

// Where a member's data ends, padded to tar's 512-byte blocks: a cut there leaves it whole.
uint64_t padded_end(const ocl::data::TarMember& m) { return m.offset + (m.size + 511) / 512 * 512; }

// The message `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string joined(const std::vector<std::string>& lines) {
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  return all;
}

bool ascii_printable(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

}  // namespace

TEST(WebDataset, SamplesImagesAndLabelsEqualTheImageFolderOfTheSameFiles) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("equal");
  ocl::data::ImageFolderOptions fo;
  fo.use_cache = false;
  ocl::data::ImageFolderDataset folder(f.root + "/train", fo);
  WebDataset shards(f.pattern, quiet());
  ASSERT_EQ(shards.size(), folder.size());
  EXPECT_EQ(shards.num_classes(), 3);
  for (int64_t i = 0; i < folder.size(); ++i) {
    EXPECT_EQ(shards.label(i), folder.label(i)) << i;
    const auto a = shards.load(i), b = folder.load(i);
    ASSERT_TRUE(a && b) << i;
    EXPECT_EQ(a->height, 32);
    EXPECT_EQ(a->pixels, b->pixels) << "sample " << i << " (" << shards.sample_path(i) << ")";
    // The region decode reads the same window as from the file.
    auto plan = [](int h, int w) { return ocl::data::DecodeRegion{h / 4, w / 4, h / 2, w / 2, 2}; };
    const auto ra = shards.load_region(i, plan), rb = folder.load_region(i, plan);
    ASSERT_TRUE(ra && rb);
    EXPECT_EQ(ra->pixels, rb->pixels) << i;
  }
  EXPECT_NE(shards.describe().find("12 samples in 2 shards"), std::string::npos)
      << shards.describe();
}

TEST(WebDataset, RanksAndWorkersTakeDisjointSharesThatCoverTheShards) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("ranks");
  auto shards = std::make_shared<WebDataset>(f.pattern, quiet());
  std::vector<int> seen(12, 0);
  for (int64_t rank = 0; rank < 2; ++rank) {
    ocl::data::LoaderOptions o;
    o.batch_size = 3;
    o.workers = 3;
    o.seed = 5;
    o.rank = rank;
    o.world_size = 2;
    ocl::data::Loader loader(shards, nullptr, o);
    loader.start_epoch(0);
    while (auto batch = loader.next()) {
      for (int64_t k = 0; k < batch->indices.size(0); ++k) {
        const int64_t index = batch->indices[k].item<int64_t>();
        seen[static_cast<size_t>(index)] += 1;
        EXPECT_EQ(batch->labels[k].item<int64_t>(), shards->label(index));
      }
    }
  }
  EXPECT_EQ(seen, std::vector<int>(12, 1));
}

TEST(WebDataset, AnEpochResumedMidWayGivesTheUninterruptedBatches) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("resume");
  auto shards = std::make_shared<WebDataset>(f.pattern, quiet());
  ocl::data::LoaderOptions o;
  o.batch_size = 2;
  o.workers = 2;
  o.seed = 9;
  std::vector<torch::Tensor> whole;
  {
    ocl::data::Loader loader(shards, nullptr, o);
    loader.start_epoch(1);
    while (auto batch = loader.next()) whole.push_back(batch->images);
  }
  ASSERT_EQ(whole.size(), 6u);
  // A new process (a new data set and loader) starting the same epoch at step 4.
  auto reopened = std::make_shared<WebDataset>(f.pattern, quiet());
  EXPECT_EQ(reopened->shards_indexed(), 0) << "the second opening reads the cached index";
  ocl::data::Loader loader(reopened, nullptr, o);
  loader.start_epoch(1, 4);
  for (size_t step = 4; step < whole.size(); ++step) {
    auto batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_TRUE(torch::equal(batch->images, whole[step])) << "step " << step;
  }
  EXPECT_FALSE(loader.next().has_value());
}

TEST(WebDataset, TheIndexIsCachedAndBuiltAgainForAChangedShard) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("cache");
  EXPECT_EQ(WebDataset(f.pattern, quiet()).shards_indexed(), 2);
  EXPECT_TRUE(fs::exists(f.shards[0] + ".ocl-index"));
  EXPECT_EQ(WebDataset(f.pattern, quiet()).shards_indexed(), 0);
  // The second shard rewritten with one sample less.
  const std::string img = f.root + "/train/ant/img0.jpg";
  write_tar(f.shards[1], {{"x/a.jpg", "@" + img}, {"x/a.cls", "=0"}}, "gnu");
  WebDataset changed(f.pattern, quiet());
  EXPECT_EQ(changed.shards_indexed(), 1);
  EXPECT_EQ(changed.size(), 7);
  // No index can be written beside the shards (a folder stands where it would go, which stops
  // root as well as a read-only file system would): it goes to the cache folder instead, and
  // without one each opening indexes again and warns.
  const auto other = make_fixture("unwritable");
  for (const auto& s : other.shards) fs::create_directory(s + ".ocl-index");
  EXPECT_EQ(WebDataset(other.pattern, quiet()).shards_indexed(), 2);
  WebDataset uncached(other.pattern, quiet());
  EXPECT_EQ(uncached.shards_indexed(), 2);
  ASSERT_EQ(uncached.warnings().size(), 2u);
  EXPECT_NE(uncached.warnings()[0].find("no writable place for the index"), std::string::npos);
  WebDatasetOptions o = quiet();
  o.cache_dir = ocl::test::make_temp_dir("ocl_wds_cachedir_");
  EXPECT_EQ(WebDataset(other.pattern, o).shards_indexed(), 2);
  WebDataset cached(other.pattern, o);
  EXPECT_EQ(cached.shards_indexed(), 0);
  EXPECT_TRUE(cached.warnings().empty());
  EXPECT_EQ(cached.size(), 12);
}

TEST(WebDataset, ShardSpecsExpandPatternsAndLists) {
  EXPECT_EQ(
      expand_shard_spec("/d/t-{008..011}.tar"),
      (std::vector<std::string>{"/d/t-008.tar", "/d/t-009.tar", "/d/t-010.tar", "/d/t-011.tar"}));
  EXPECT_EQ(expand_shard_spec("/d/{a,b}-{1..2}.tar"),
            (std::vector<std::string>{"/d/a-1.tar", "/d/a-2.tar", "/d/b-1.tar", "/d/b-2.tar"}));
  EXPECT_EQ(expand_shard_spec("/d/one.tar"), std::vector<std::string>{"/d/one.tar"});
  const std::string dir = ocl::test::make_temp_dir("ocl_wds_list_");
  std::ofstream(dir + "/shards.txt") << "# train\n\na.tar\n/abs/b.tar\n  sub/c.tar  \n";
  EXPECT_EQ(expand_shard_spec(dir + "/shards.txt"),
            (std::vector<std::string>{dir + "/a.tar", "/abs/b.tar", dir + "/sub/c.tar"}));
  OCL_EXPECT_THROW_WITH(expand_shard_spec("/d/t-{5..3}.tar"), "the range {5..3} is empty");
  OCL_EXPECT_THROW_WITH(expand_shard_spec("/d/t-{1..x}.tar"), "is not a range");
  OCL_EXPECT_THROW_WITH(expand_shard_spec("/d/t-{1..3.tar"), "a '{' without its '}'");
  OCL_EXPECT_THROW_WITH(expand_shard_spec("/d/{a,a}.tar"), "shard '/d/a.tar' is named twice");
  std::ofstream(dir + "/twice.txt") << "a.tar\n./a.tar\n";
  OCL_EXPECT_THROW_WITH(expand_shard_spec(dir + "/twice.txt"), "is named twice");
  std::ofstream(dir + "/empty.txt") << "# nothing\n";
  OCL_EXPECT_THROW_WITH(expand_shard_spec(dir + "/empty.txt"), "names no shard");
  OCL_EXPECT_THROW_WITH(expand_shard_spec(dir + "/missing-list"), "is neither a shard pattern");
}

TEST(WebDataset, BadShardsAreNamedWithTheShardAndTheMember) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("bad");
  const std::string img = f.root + "/train/ant/img0.jpg", png = f.root + "/train/ant/img2.png";
  const std::string dir = f.root + "/bad";
  fs::create_directories(dir);
  auto open = [&](const std::vector<Member>& members, const std::string& format = "pax") {
    const std::string tar = dir + "/s.tar";
    write_tar(tar, members, format);
    fs::remove(tar + ".ocl-index");
    WebDataset set(tar, quiet());
  };
  OCL_EXPECT_THROW_WITH(open({{"k/a.cls", "=1"}, {"k/a.txt", "=hi"}}),
                        "s.tar: sample 'k/a' has no image (.jpg, .jpeg, .png or .webp); its "
                        "members: k/a.cls, k/a.txt");
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.png", "@" + png}}),
                        "s.tar: sample 'k/a' has two images, 'k/a.jpg' and 'k/a.png'");
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=cat"}}),
                        "s.tar: member 'k/a.cls' holds 'cat', not a class index");
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=-1"}}),
                        "holds '-1', not a class index");
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=99999999999"}}),
                        "s.tar: member 'k/a.cls' holds class 99999999999, out of range");
  // The largest index a .cls may hold used to be 2,147,483,646, for which every app built a
  // class-name string per index and died in std::bad_alloc naming no shard: now a million
  // classes at most, the shard and member named.
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=2147483646"}}),
                        "s.tar: member 'k/a.cls' holds class 2147483646, out of range: ocl takes "
                        "class indices 0 .. 999999");
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=1000000"}}), "out of range");
  EXPECT_NO_THROW(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=999999"}}));
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/a.cls", "=1"}, {"k/b.jpg", "@" + img}}),
                        "s.tar: sample 'k/b' has no .cls member while other samples have one");
  OCL_EXPECT_THROW_WITH(open({{"k/a.jpg", "@" + img}, {"k/b.jpg", "@" + img}, {"k/a.cls", "=1"}}),
                        "s.tar: key 'k/a' comes back at member 'k/a.cls'");
  // A shard the pattern names that does not exist.
  OCL_EXPECT_THROW_WITH(WebDataset(f.root + "/shards/train-{00..02}.tar", quiet()),
                        "shard '" + f.root + "/shards/train-02.tar' (from '");

  // Truncated: the second shard cut inside its last image.
  std::ifstream in(f.shards[1], std::ios::binary);
  const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
  const auto members = ocl::data::index_tar(ocl::data::memory_reader(bytes.data(), bytes.size()),
                                            bytes.size(), "shard");
  const auto& last_image = members[members.size() - 2];
  fs::resize_file(f.shards[1], last_image.offset + last_image.size / 2);
  OCL_EXPECT_THROW_WITH(WebDataset(f.pattern, quiet()), "train-01.tar, byte ");
  OCL_EXPECT_THROW_WITH(WebDataset(f.pattern, quiet()), "it is truncated");
  // Not a tar archive at all.
  std::ofstream(dir + "/junk.tar") << std::string(4096, 'j');
  OCL_EXPECT_THROW_WITH(WebDataset(dir + "/junk.tar", quiet()),
                        "junk.tar, byte 0: not a tar header");
}

TEST(WebDataset, AnImageThatDoesNotDecodeIsABadSampleNamingShardAndMember) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("corrupt");
  const std::string dir = f.root + "/corrupt";
  fs::create_directories(dir);
  const std::string junk = dir + "/junk.jpg";
  std::ofstream(junk) << "\xff\xd8\xff not really a jpeg";
  const std::string img = f.root + "/train/ant/img0.jpg";
  write_tar(dir + "/c.tar", {{"k/a.jpg", "@" + img}, {"k/b.jpg", "@" + junk}});
  WebDataset set(dir + "/c.tar", quiet());
  ASSERT_EQ(set.size(), 2);
  EXPECT_EQ(set.class_names(), std::vector<std::string>{"unlabelled"});
  EXPECT_TRUE(set.load(0).has_value());
  ocl::data::BadSample bad;
  EXPECT_FALSE(set.load(1, &bad).has_value());
  EXPECT_EQ(bad.index, 1);
  EXPECT_EQ(bad.path, dir + "/c.tar:k/b.jpg");
  EXPECT_FALSE(bad.reason.empty());
}

// Issue 43: a shard cut at a sample boundary, without tar's end-of-archive blocks, used to read
// as whole, and a 0-byte shard as a shard without samples, both silently.
TEST(WebDataset, AShardCutAtASampleBoundaryOrEmptyIsNamedInAWarning) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("cutwarn");
  const auto members = members_of(f.shards[1]);
  // Cut after the fifth sample's .cls: the sixth sample and the end-of-archive blocks are gone.
  fs::resize_file(f.shards[1], padded_end(members[members.size() - 3]));
  fs::last_write_time(f.shards[1], fs::file_time_type::clock::now() - std::chrono::minutes(1));
  for (int pass = 0; pass < 2; ++pass) {  // indexed, then read from the cached index
    WebDataset set(f.pattern, quiet());
    EXPECT_EQ(set.shards_indexed(), pass == 0 ? 2 : 0);
    EXPECT_EQ(set.size(), 11);
    EXPECT_EQ(set.warnings().size(), 1u) << pass;
    EXPECT_NE(joined(set.warnings())
                  .find("shard '" + f.shards[1] + "' ends without tar's end-of-archive blocks"),
              std::string::npos)
        << joined(set.warnings());
  }
  const std::string empty = f.root + "/shards/empty.tar";
  std::ofstream(empty).close();
  std::ofstream(f.root + "/list.txt") << f.shards[0] << "\n" << empty << "\n";
  WebDataset with_empty(f.root + "/list.txt", quiet());
  EXPECT_EQ(with_empty.size(), 6);
  EXPECT_EQ(with_empty.warnings().size(), 1u);
  EXPECT_NE(joined(with_empty.warnings()).find("shard '" + empty + "' is empty (0 bytes)"),
            std::string::npos)
      << joined(with_empty.warnings());
  OCL_EXPECT_THROW_WITH(WebDataset(empty, quiet()), "is empty (0 bytes)");
}

// Issue 43: what a careless user gave, each named for what it is.
TEST(WebDataset, CarelessShardsAndSpecsAreNamedForWhatTheyAre) {
  OCL_REQUIRE_PYTHON();
  const auto f = make_fixture("careless");
  const std::string dir = f.root + "/careless";
  fs::create_directories(dir);
  // A tar shard named without .tar is a shard, not a list of shards.
  fs::copy_file(f.shards[0], dir + "/train.shard");
  EXPECT_EQ(error_of([&] { EXPECT_EQ(WebDataset(dir + "/train.shard", quiet()).size(), 6); }), "");
  // A folder is named as one (it read as an empty list).
  OCL_EXPECT_THROW_WITH(expand_shard_spec(dir), "'" + dir + "' is a folder");
  // Cut after the last sample's image, before its .cls: not "a sample without a .cls".
  const auto members = members_of(f.shards[1]);
  const auto& image = members[members.size() - 2];
  fs::resize_file(f.shards[1], padded_end(image));
  const std::string cut = error_of([&] { WebDataset(f.pattern, quiet()); });
  EXPECT_NE(cut.find("train-01.tar: the shard ends inside sample '" +
                     image.name.substr(0, image.name.rfind('.')) + "', after its member '" +
                     image.name + "' at byte " + std::to_string(padded_end(image)) +
                     " (the shard's size): it was cut short"),
            std::string::npos)
      << cut;
  // A gzip'd shard, given as x.tar.gz: named as gzip, not read as a list printing its bytes.
  std::ofstream(dir + "/s.tar.gz", std::ios::binary)
      << std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10) << std::string(600, '\x8b');
  OCL_EXPECT_THROW_WITH(WebDataset(dir + "/s.tar.gz", quiet()),
                        "s.tar.gz: gzip-compressed, not a tar archive");
  // A list of bytes that are no paths: quoted escaped and bounded.
  std::ofstream(dir + "/list.txt", std::ios::binary) << std::string(40000, '\x8b') << "\x01\n";
  const std::string junk = error_of([&] { WebDataset(dir + "/list.txt", quiet()); });
  EXPECT_TRUE(ascii_printable(junk) && junk.size() < 1000) << junk.size() << " bytes: " << junk;
  EXPECT_NE(junk.find("line 1"), std::string::npos) << junk;
  EXPECT_NE(junk.find("\\x8b\\x8b"), std::string::npos) << junk;
  // A sample's members are listed up to a few, each name bounded (this one ran to 30 KB).
  std::vector<Member> many;
  for (int i = 0; i < 30; ++i)
    many.push_back({"k/a.x" + std::to_string(i) + std::string(1000, 'n'), "=1"});
  write_tar(dir + "/many.tar", many);
  const std::string listed = error_of([&] { WebDataset(dir + "/many.tar", quiet()); });
  EXPECT_LT(listed.size(), 2000u) << listed.substr(0, 400);
  EXPECT_NE(listed.find("its members: k/a.x0nnn"), std::string::npos) << listed;
  EXPECT_NE(listed.find(" and 26 more"), std::string::npos) << listed;
}
