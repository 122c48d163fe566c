// Streamed WebDataset shards (data/shard_stream.h, data/streaming.h): shards written by Python's
// tarfile read through `pipe:cat`, a loopback HTTP server (tests/unit/shard_server.py) and as
// local streams give the samples of the index path; the order is a function of the seed, the
// epoch and the step (a resumed epoch gives the uninterrupted batches); ranks and workers take
// disjoint shares; faults (HTTP 404 / 503, a dropped or stalled connection, a refused one, a
// command that fails or is killed, a compressed shard) are retried, then counted or named, with
// credentials never in a message; the shuffle buffer bounds what a worker holds.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tar_fixture.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <ocl/data/png.h>
#include <ocl/data/shard_stream.h>
#include <ocl/data/streaming.h>
#include <ocl/data/webdataset.h>

extern char** environ;

// Named, not anonymous: the unit tests are compiled in unity batches with test_webdataset.cpp.
namespace ocl_streaming_test {

namespace fs = std::filesystem;
using ocl::data::StreamingLoader;
using ocl::data::StreamingOptions;

// `count` shards of `per_shard` samples each: a lossless PNG (so that decoded pixels can be
// compared), a .cls and a .json member that the reader passes over unread.
struct Shards {
  std::string dir;
  std::vector<std::string> names;  // file names, train-00.tar, ...
  std::vector<std::string> rows;   // every sample's "<label>:<pixels>", sorted
  std::vector<std::string> paths(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& n : names) out.push_back(prefix + n);
    return out;
  }
};

std::string row_text(const torch::Tensor& chw, int64_t label) {
  const auto c = chw.contiguous();
  return std::to_string(label) + ":" +
         std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()),
                     static_cast<size_t>(c.numel()));
}

Shards make_shards(const std::string& name, int count, int per_shard) {
  Shards s;
  s.dir = ocl::test::make_temp_dir("ocl_stream_" + name + "_");
  int i = 0;
  for (int shard = 0; shard < count; ++shard) {
    std::vector<ocl::test::Member> members;
    for (int k = 0; k < per_shard; ++k, ++i) {
      const auto image = ocl::test::shard_image(i % 32);  // the synthetic set's 32 images
      const auto png = ocl::data::encode_png(image);
      const std::string file = s.dir + "/img" + std::to_string(i) + ".png";
      std::ofstream(file, std::ios::binary)
          .write(reinterpret_cast<const char*>(png.data()),
                 static_cast<std::streamsize>(png.size()));
      char key[32];
      std::snprintf(key, sizeof(key), "s%05d", i);
      members.push_back({std::string(key) + ".png", "@" + file});
      members.push_back({std::string(key) + ".cls", "=" + std::to_string(i % 7)});
      members.push_back({std::string(key) + ".json", "={\"i\": " + std::to_string(i) + "}"});
      auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                  {image.height, image.width, 3}, torch::kUInt8);
      s.rows.push_back(row_text(hwc.permute({2, 0, 1}), i % 7));
    }
    char tar[32];
    std::snprintf(tar, sizeof(tar), "train-%02d.tar", shard);
    s.names.push_back(tar);
    ocl::test::write_tar(s.dir + "/" + tar, members, shard % 2 ? "gnu" : "pax");
  }
  std::sort(s.rows.begin(), s.rows.end());
  return s;
}

StreamingOptions options(int64_t batch, int64_t workers, int64_t samples, int64_t buffer = 4) {
  StreamingOptions o;
  o.loader.batch_size = batch;
  o.loader.workers = workers;
  o.loader.prefetch = 2;
  o.loader.seed = 11;
  o.samples_per_epoch = samples;
  o.shuffle_buffer = buffer;
  o.retries = 1;
  o.retry_delay_s = 0.01;
  o.stream.timeout_s = 5;
  return o;
}

// Every row of the batches of `epoch` from batch `first` on, in order.
std::vector<std::string> epoch_rows(StreamingLoader& loader, int64_t epoch, int64_t first = 0) {
  loader.start_epoch(epoch, first);
  std::vector<std::string> rows;
  while (auto b = loader.next()) {
    for (int64_t i = 0; i < b->images.size(0); ++i)
      rows.push_back(row_text(b->images[i], b->labels[i].item<int64_t>()));
  }
  return rows;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The message the first batch of `shards` throws ("" when none).
std::string first_error(const std::vector<std::string>& shards, StreamingOptions o) {
  try {
    StreamingLoader loader(shards, nullptr, o);
    loader.start_epoch(0);
    while (loader.next()) {
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// shard_server.py over `root` at a free loopback port, stopped with the test.
class ShardServer {
 public:
  explicit ShardServer(const std::string& root) {
    const std::string port_file = root + "/port";
    std::vector<std::string> args = {ocl::test::kPython,
                                     std::string(OCL_FIXTURE_DIR) + "/../unit/shard_server.py",
                                     root, port_file};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(::posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    for (int i = 0; i < 200 && !fs::exists(port_file); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    port_ = std::stoi(ocl::test::read_file(port_file));
  }
  ~ShardServer() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  std::string url(const std::string& kind) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + kind + "/";
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

#define OCL_REQUIRE_HTTP() \
  OCL_REQUIRE_PYTHON();    \
  if (!ocl::data::has_http_reader()) GTEST_SKIP() << "built without libcurl"

TEST(StreamedShards, PipeHttpAndLocalStreamsHoldTheSamplesOfTheIndexInOneOrder) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("same", 4, 6);
  // One epoch of 24 samples: each of the 2 workers streams its 2 shards once.
  StreamingLoader pipe(s.paths("pipe:cat " + s.dir + "/"), nullptr, options(4, 2, 24));
  StreamingLoader local(s.paths(s.dir + "/"), nullptr, options(4, 2, 24));
  const auto rows = epoch_rows(pipe, 0);
  EXPECT_EQ(sorted(rows), s.rows);     // every sample once, pixels and labels whole
  EXPECT_NE(rows, s.rows);             // shuffled
  if (ocl::data::has_http_reader()) {  // a build without libcurl (the GPU kit's) has no http
    const ShardServer server(s.dir);
    StreamingLoader http(s.paths(server.url("ok")), nullptr, options(4, 2, 24));
    EXPECT_EQ(epoch_rows(http, 0), rows);
  }
  EXPECT_EQ(epoch_rows(local, 0), rows);
  EXPECT_NE(epoch_rows(local, 1), rows);  // another epoch, another order
  // The index path reads the same samples.
  ocl::data::WebDatasetOptions wo;
  wo.progress = false;
  const ocl::data::WebDataset indexed(s.dir + "/train-{00..03}.tar", wo);
  std::vector<std::string> index_rows;
  for (int64_t i = 0; i < indexed.size(); ++i) {
    const auto image = indexed.load(i).value();
    auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                {image.height, image.width, 3}, torch::kUInt8);
    index_rows.push_back(row_text(hwc.permute({2, 0, 1}), indexed.label(i)));
  }
  EXPECT_EQ(sorted(index_rows), s.rows);
}

TEST(StreamedShards, AResumedEpochGivesTheUninterruptedBatches) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("resume", 4, 5);
  const auto shards = s.paths("pipe:cat " + s.dir + "/");
  // 36 samples per epoch from 20: the workers stream their shards a second time.
  StreamingLoader a(shards, nullptr, options(3, 2, 36, 5));
  const auto full = epoch_rows(a, 2);
  ASSERT_EQ(full.size(), 36u);
  StreamingLoader b(shards, nullptr, options(3, 2, 36, 5));
  EXPECT_EQ(epoch_rows(b, 2), full);
  for (const int64_t first : {1, 4, 7}) {
    StreamingLoader c(shards, nullptr, options(3, 2, 36, 5));
    EXPECT_EQ(epoch_rows(c, 2, first),
              std::vector<std::string>(full.begin() + first * 3, full.end()))
        << "resumed at batch " << first;
  }
}

TEST(StreamedShards, RanksAndWorkersTakeDisjointSharesThatCoverTheShards) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("share", 8, 3);
  std::vector<std::string> all;
  for (int64_t rank = 0; rank < 2; ++rank) {
    auto o = options(3, 2, 24);
    o.loader.rank = rank;
    o.loader.world_size = 2;
    StreamingLoader loader(s.paths(s.dir + "/"), nullptr, o);
    EXPECT_EQ(loader.steps_per_epoch(), 4);
    const auto rows = epoch_rows(loader, 5);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  EXPECT_EQ(sorted(all), s.rows);
  auto o = options(3, 2, 24);
  o.loader.world_size = 2;
  const auto paths = s.paths(s.dir + "/");
  const std::string message = first_error({paths.begin(), paths.begin() + 3}, o);
  EXPECT_NE(message.find("3 shards for 2 ranks x 2 data.workers = 4 streams"), std::string::npos)
      << message;
}

// 200 shards (copies of one) of 3 samples: a worker holds its buffer's 6 samples however many
// shards there are.
TEST(StreamedShards, TheShuffleBufferBoundsWhatAWorkerHolds) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("memory", 1, 3);
  std::vector<std::string> shards, rows;
  for (int i = 0; i < 200; ++i) {
    shards.push_back(s.dir + "/copy-" + std::to_string(i) + ".tar");
    fs::copy_file(s.dir + "/train-00.tar", shards.back());
    rows.insert(rows.end(), s.rows.begin(), s.rows.end());
  }
  StreamingLoader loader(shards, nullptr, options(4, 2, 600, 6));
  EXPECT_EQ(sorted(epoch_rows(loader, 0)), sorted(rows));
  EXPECT_EQ(loader.max_buffered(), 6);
}

TEST(StreamedShards, HttpFaultsAreRetriedThenNamedWithoutCredentials) {
  OCL_REQUIRE_HTTP();
  const auto s = make_shards("http_faults", 2, 4);
  const ShardServer server(s.dir);
  auto strict = options(2, 1, 8);
  strict.loader.max_bad_fraction = 0;
  const std::string secret_url = server.url("status/404");
  const std::string with_credentials =
      "http://alice:hunter2@" + secret_url.substr(7) + "train-00.tar?X-Amz-Signature=s3cr3t";
  std::string message = first_error({with_credentials, server.url("ok") + "train-01.tar"}, strict);
  EXPECT_NE(message.find("HTTP 404"), std::string::npos) << message;
  EXPECT_NE(message.find("127.0.0.1"), std::string::npos) << message;
  EXPECT_NE(message.find("failed 2 times"), std::string::npos) << message;
  for (const char* secret : {"alice", "hunter2", "s3cr3t"})
    EXPECT_EQ(message.find(secret), std::string::npos) << message;
  message = first_error(s.paths(server.url("status/503")), strict);
  EXPECT_NE(message.find("HTTP 503"), std::string::npos) << message;

  // A connection closed mid-shard every time: the shard is named; tolerated, only its whole
  // samples were delivered (none cut short: nothing fails to decode).
  message = first_error(s.paths(server.url("drop/3000")), strict);
  EXPECT_NE(message.find("drop/3000/train-0"), std::string::npos) << message;
  auto tolerant = options(2, 1, 8);
  tolerant.loader.max_bad_fraction = 1;
  StreamingLoader dropping(
      {server.url("drop/3000") + "train-00.tar", server.url("ok") + "train-01.tar"}, nullptr,
      tolerant);
  for (const auto& row : epoch_rows(dropping, 0))
    EXPECT_TRUE(std::binary_search(s.rows.begin(), s.rows.end(), row));
  EXPECT_EQ(dropping.bad_samples(), 0);
  EXPECT_EQ(dropping.bad_shards(), 1);

  // Dropped once, then whole: the retry skips what was delivered; the epoch is the clean one.
  StreamingLoader clean(s.paths(server.url("ok")), nullptr, options(2, 1, 8));
  StreamingLoader flaky(s.paths(server.url("flaky/1")), nullptr, options(2, 1, 8));
  EXPECT_EQ(epoch_rows(flaky, 0), epoch_rows(clean, 0));
  EXPECT_EQ(flaky.bad_shards(), 0);

  // A stalled transfer gives up after data.stream_timeout_s.
  auto stall = strict;
  stall.stream.timeout_s = 1;
  stall.retries = 0;
  const auto t0 = std::chrono::steady_clock::now();
  message = first_error(s.paths(server.url("stall/2000")), stall);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  EXPECT_NE(message.find("data.stream_timeout_s"), std::string::npos) << message;

  // Nobody listening.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  const std::string closed =
      "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/ok/train-00.tar";
  message = first_error({closed, server.url("ok") + "train-01.tar"}, strict);
  EXPECT_NE(message.find("onnect"), std::string::npos) << message;
}

TEST(StreamedShards, PipeCommandsThatFailOrAreKilledAreNamedWithTheirStderr) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("pipe_faults", 2, 2);
  auto o = options(2, 1, 4);
  o.loader.max_bad_fraction = 0;
  o.retries = 0;
  const std::string ok = "pipe:cat " + s.dir + "/train-01.tar";
  std::string message = first_error({"pipe:sh -c 'echo disk-on-fire >&2; exit 3'", ok}, o);
  EXPECT_NE(message.find("exited with status 3"), std::string::npos) << message;
  EXPECT_NE(message.find("disk-on-fire"), std::string::npos) << message;
  // A command run directly (no shell metacharacters) that kills itself after its output.
  std::ofstream(s.dir + "/self-kill") << "#!/bin/sh\ncat \"$1\"\nkill -9 $$\n";
  fs::permissions(s.dir + "/self-kill", fs::perms::owner_all);
  message = first_error({"pipe:" + s.dir + "/self-kill " + s.dir + "/train-00.tar", ok}, o);
  EXPECT_NE(message.find("killed by signal 9"), std::string::npos) << message;
  message = first_error({"pipe:no-such-command-ocl " + s.dir + "/train-00.tar", ok}, o);
  EXPECT_NE(message.find("no-such-command-ocl"), std::string::npos) << message;
  // Compressed data is named, not read as tar.
  message = first_error({"pipe:gzip -c " + s.dir + "/train-00.tar", ok}, o);
  EXPECT_NE(message.find("gzip-compressed"), std::string::npos) << message;
  EXPECT_NE(message.find("| gunzip -c"), std::string::npos) << message;
}

// A loader closed while its worker waits on a command that says nothing (and on a stalled
// server) returns at once, not after data.stream_timeout_s: the wait is abandoned, the command
// killed.
TEST(StreamedShards, ALoaderStoppedMidStreamDoesNotWaitOutTheTimeout) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("stop", 2, 2);
  auto o = options(2, 1, 4);
  o.stream.timeout_s = 60;
  auto closes_promptly = [&](const std::vector<std::string>& shards) {
    const auto t0 = std::chrono::steady_clock::now();
    {
      StreamingLoader loader(shards, nullptr, o);
      loader.start_epoch(0);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5);
  };
  EXPECT_TRUE(closes_promptly({"pipe:sleep 120", "pipe:sleep 120"}));
  if (ocl::data::has_http_reader()) {
    const ShardServer server(s.dir);
    EXPECT_TRUE(closes_promptly(s.paths(server.url("stall/100"))));
  }
}

TEST(StreamedShards, SizesJsonGivesTheEpochAndPatternsPassUrlsThrough) {
  OCL_REQUIRE_PYTHON();
  const auto s = make_shards("sizes", 2, 3);
  std::ofstream(s.dir + "/sizes.json") << R"({"train-00.tar": 3, "train-01.tar": 3, "x.tar": 9})";
  std::string where;
  EXPECT_EQ(ocl::data::count_samples(s.paths(s.dir + "/"), {}, &where), 6);
  EXPECT_EQ(where, s.dir + "/sizes.json");
  EXPECT_EQ(ocl::data::count_samples(s.paths("pipe:cat " + s.dir + "/"), {}, &where), 6);
  EXPECT_EQ(where, "pipe:cat " + s.dir + "/sizes.json");
  EXPECT_EQ(ocl::data::count_samples({s.dir + "/nowhere/train-00.tar"}, {}, &where), 0);
  OCL_EXPECT_THROW_WITH(ocl::data::count_samples({s.dir + "/train-02.tar"}, {}, &where),
                        "no sample count for 'train-02.tar'");

  EXPECT_EQ(ocl::data::expand_shard_spec("pipe:aws s3 cp s3://b/t-{0..2}.tar -"),
            (std::vector<std::string>{"pipe:aws s3 cp s3://b/t-0.tar -",
                                      "pipe:aws s3 cp s3://b/t-1.tar -",
                                      "pipe:aws s3 cp s3://b/t-2.tar -"}));
  EXPECT_EQ(ocl::data::expand_shard_spec("https://h.org/d/t-{08..10}.tar").back(),
            "https://h.org/d/t-10.tar");
  std::ofstream(s.dir + "/list.txt") << "https://h.org/a.tar\npipe:cat b.tar\nc.tar\n";
  EXPECT_EQ(ocl::data::expand_shard_spec(s.dir + "/list.txt"),
            (std::vector<std::string>{"https://h.org/a.tar", "pipe:cat b.tar", s.dir + "/c.tar"}));
  EXPECT_EQ(ocl::data::shard_file_name("pipe:gsutil cat gs://b/x/train-07.tar"), "train-07.tar");
}

TEST(StreamedShards, RedactStripsUserInfoAndQueryStrings) {
  using ocl::data::redact;
  EXPECT_EQ(redact("https://u:p@h.org/x.tar"), "https://h.org/x.tar");
  EXPECT_EQ(redact("pipe:curl -s https://tok@h.org/x.tar?sig=abc -o -"),
            "pipe:curl -s https://h.org/x.tar?... -o -");
  EXPECT_EQ(redact("s3://bucket/a@b.tar"), "s3://bucket/a@b.tar");  // no user-info: unchanged
  EXPECT_EQ(redact("/data/x.tar"), "/data/x.tar");
}

// The GPU kit's build has no libcurl: an http(s) shard is refused, naming the way around.
TEST(StreamedShards, ABuildWithoutLibcurlRefusesHttpNamingPipeCurl) {
  if (ocl::data::has_http_reader()) GTEST_SKIP() << "this build reads http(s) through libcurl";
  OCL_EXPECT_THROW_WITH(ocl::data::open_shard_stream("https://u:pw@h.org/x.tar", {}),
                        "'pipe:curl -sfL URL'");
}

}  // namespace ocl_streaming_test
