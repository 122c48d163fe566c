// ocl_pack end to end: an ImageFolder of JPEG files (one of them corrupt) packed raw and as
// JPEG, refused and replaced as asked, stopped and resumed to the pack an uninterrupted run
// writes; and the packed data read by the training pipeline (ocl_knn's features) equal to the
// ImageFolder's.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "integration/process_util.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/image_folder.h>
#include <ocl/data/packed.h>
#include <ocl/data/streaming.h>
#include <ocl/data/synthetic.h>
#include <ocl/data/tar_writer.h>
#include <ocl/data/webdataset.h>
#include <ocl/io/files.h>
#include <ocl/io/safetensors.h>

namespace {
namespace fs = std::filesystem;

using ocl::test::read_file;

std::string make_dir(const std::string& name) {
  return ocl::test::make_temp_dir("ocl_pack_" + name + "_");
}

// root/{train,val}/{class_a,class_b,class_c}/img_N.jpg: synthetic 40x48 images as JPEG files
// (train: 7 per class, val: 3), plus a corrupt train file.
void make_image_folder(const std::string& root) {
  ocl::data::SyntheticOptions o;
  o.size = 64;
  o.num_classes = 10;
  o.image_size = 40;
  ocl::data::SyntheticDataset set(o);
  int k = 0;
  for (const std::string split : {"train", "val"}) {
    for (const std::string cls : {"class_a", "class_b", "class_c"}) {
      const std::string dir = root + "/" + split + "/" + cls;
      ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
      for (int i = 0; i < (split == "train" ? 7 : 3); ++i) {
        const auto jpeg = ocl::data::encode_jpeg(set.load(k++).value(), 92);
        std::ofstream(dir + "/img_" + std::to_string(i) + ".jpg", std::ios::binary)
            .write(reinterpret_cast<const char*>(jpeg.data()),
                   static_cast<std::streamsize>(jpeg.size()));
      }
    }
  }
  std::ofstream(root + "/train/class_b/img_9.jpg") << "not a jpeg";
}

int run(const char* exe, const std::string& log, const std::vector<std::string>& args) {
  return ocl_test::wait_for(ocl_test::spawn(exe, args, {}, log, ocl_test::kLaunchVars), 300);
}

// ocl_knn's features of a random encoder (--save-features) over the data `data` sets.
ocl::io::TensorMap knn_features(const std::string& dir, const std::string& name,
                                const std::vector<std::string>& data) {
  std::vector<std::string> args = {"--config",
                                   std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
                                   "--weights",
                                   "none",
                                   "--k",
                                   "3",
                                   "--set",
                                   "data.workers=1",
                                   "--set",
                                   "data.augment=none",
                                   "--save-features",
                                   dir + "/" + name + ".safetensors"};
  args.insert(args.end(), data.begin(), data.end());
  EXPECT_EQ(run(OCL_KNN_EXE, dir + "/" + name + ".log", args), 0)
      << read_file(dir + "/" + name + ".log");
  return ocl::io::read_safetensors(dir + "/" + name + ".safetensors").tensors;
}

int pack(const std::string& dir, const std::string& name, std::vector<std::string> extra) {
  std::vector<std::string> args = {"--source", dir + "/folder", "--threads", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run(OCL_PACK_EXE, dir + "/" + name + ".log", args);
}

TEST(OclPack, PacksRefusesResumesAndMatchesTheImageFolder) {
  const auto dir = make_dir("app");
  make_image_folder(dir + "/folder");

  ASSERT_EQ(pack(dir, "raw", {"--output", dir + "/raw", "--encoding", "raw"}), 0)
      << read_file(dir + "/raw.log");
  const auto log = read_file(dir + "/raw.log");
  EXPECT_NE(log.find("train: done: packed (raw)"), std::string::npos) << log;
  EXPECT_NE(log.find("1 unreadable images skipped"), std::string::npos) << log;
  EXPECT_NE(log.find("img_9.jpg"), std::string::npos) << log;
  ocl::data::PackedDataset train(dir + "/raw/train");
  EXPECT_EQ(train.size(), 21);
  EXPECT_EQ(train.class_names(), (std::vector<std::string>{"class_a", "class_b", "class_c"}));
  EXPECT_EQ(ocl::data::PackedDataset(dir + "/raw/val").size(), 9);

  // An existing pack is refused, then replaced with --overwrite.
  EXPECT_EQ(pack(dir, "again", {"--output", dir + "/raw", "--encoding", "raw"}), 1);
  EXPECT_NE(read_file(dir + "/again.log").find("--overwrite"), std::string::npos);
  ASSERT_EQ(pack(dir, "over", {"--output", dir + "/raw", "--encoding", "raw", "--overwrite"}), 0)
      << read_file(dir + "/over.log");

  // JPEG, stopped after about 8 images and resumed: the same records as one uninterrupted run.
  ASSERT_EQ(pack(dir, "whole", {"--output", dir + "/jpeg", "--split", "train"}), 0)
      << read_file(dir + "/whole.log");
  ASSERT_EQ(pack(dir, "stopped",
                 {"--output", dir + "/cont", "--split", "train", "--stop-after-images", "8"}),
            0)
      << read_file(dir + "/stopped.log");
  EXPECT_NE(read_file(dir + "/stopped.log").find("rerun with --resume"), std::string::npos);
  EXPECT_EQ(pack(dir, "noresume", {"--output", dir + "/cont", "--split", "train"}), 1);
  EXPECT_NE(read_file(dir + "/noresume.log").find("--resume"), std::string::npos);
  ASSERT_EQ(pack(dir, "resumed", {"--output", dir + "/cont", "--split", "train", "--resume"}), 0)
      << read_file(dir + "/resumed.log");
  EXPECT_NE(read_file(dir + "/resumed.log").find("resuming at image"), std::string::npos);
  ocl::data::PackedDataset whole(dir + "/jpeg/train"), cont(dir + "/cont/train");
  ASSERT_EQ(cont.size(), whole.size());
  for (int64_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(cont.record(i).source, whole.record(i).source) << i;
    EXPECT_EQ(cont.record(i).crc32, whole.record(i).crc32) << i;
    EXPECT_EQ(cont.label(i), whole.label(i)) << i;
  }

  // The pipeline reads the raw pack as it reads the folder (less the corrupt file, which the
  // pack never held): the same features, image for image.
  auto features = [&](const std::string& name, const std::vector<std::string>& data) {
    return knn_features(dir, name, data);
  };

  const auto packed = features(
      "knn_packed", {"--set", "data.dataset=packed", "--set", "data.path=" + dir + "/raw"});
  std::remove((dir + "/folder/train/class_b/img_9.jpg").c_str());
  const auto folder = features(
      "knn_folder", {"--set", "data.dataset=imagefolder", "--set", "data.path=" + dir + "/folder"});
  ASSERT_EQ(packed.at("val_features").size(0), 9);
  EXPECT_TRUE(torch::equal(packed.at("val_labels"), folder.at("val_labels")));
  EXPECT_LT((packed.at("val_features") - folder.at("val_features")).abs().max().item<double>(),
            1e-6);
  EXPECT_NE(read_file(dir + "/knn_packed.log").find("packed (raw)"), std::string::npos);
}

// --format webdataset: the folder as tar shards that data.dataset webdataset reads back, each
// sample labelled as the folder labels its file and keyed by the file's index; the corrupt file
// skipped and named; existing shards refused without --overwrite; --resume refused.
TEST(OclPack, WritesWebDatasetShardsThatReadAsTheFolder) {
  const auto dir = make_dir("wds");
  make_image_folder(dir + "/folder");
  const std::string out = dir + "/wds";
  ASSERT_EQ(pack(dir, "wds", {"--output", out, "--format", "webdataset", "--short-side", "0"}), 0)
      << read_file(dir + "/wds.log");
  const auto log = read_file(dir + "/wds.log");
  EXPECT_NE(log.find("img_9.jpg"), std::string::npos) << log;
  EXPECT_NE(log.find("train: data.path " + out + "/train-{000000..000000}.tar"), std::string::npos)
      << log;
  ocl::data::ImageFolderOptions fo;
  fo.use_cache = false;
  const ocl::data::ImageFolderDataset folder(dir + "/folder/train", fo);
  const ocl::data::WebDataset shards(out + "/train-{000000..000000}.tar");
  ASSERT_EQ(shards.size(), folder.size() - 1);  // less the corrupt file
  for (int64_t i = 0; i < shards.size(); ++i) {
    const std::string path = shards.sample_path(i);  // ".../train-000000.tar:00000007.jpg"
    const int64_t source = std::stoll(path.substr(path.rfind(':') + 1, 8));
    EXPECT_EQ(shards.label(i), folder.label(source)) << path;
    const auto image = shards.load(i);
    ASSERT_TRUE(image.has_value()) << path;
    EXPECT_EQ(image->height, 40);
  }
  EXPECT_EQ(ocl::data::WebDataset(out + "/val-{000000..000000}.tar").size(), 9);
  // sizes.json beside the shards counts both splits' samples (streamed shards' epoch length).
  std::string sizes;
  EXPECT_EQ(
      ocl::data::count_samples({out + "/train-000000.tar", out + "/val-000000.tar"}, {}, &sizes),
      shards.size() + 9);
  EXPECT_EQ(sizes, out + "/sizes.json");

  // ocl_knn over the shards streamed through a pipe: command: the features of the index path.
  auto features = [&](const std::string& name, const std::string& prefix) {
    return knn_features(dir, name,
                        {"--set", "data.dataset=webdataset", "--set",
                         "data.path=" + prefix + out + "/train-000000.tar", "--set",
                         "data.val_path=" + prefix + out + "/val-000000.tar", "--set",
                         "data.cache_dir=" + dir + "/cache-" + name});
  };

  const auto indexed = features("knn_index", ""), streamed = features("knn_pipe", "pipe:cat ");
  for (const char* key : {"train_features", "train_labels", "val_features", "val_labels"})
    EXPECT_TRUE(torch::equal(indexed.at(key), streamed.at(key))) << key;
  // Again from the shard cache the first run filled: the same features with the shards gone
  // from their source.
  fs::rename(out, out + "-away");
  const auto cached = knn_features(dir, "knn_cached",
                                   {"--set", "data.dataset=webdataset", "--set",
                                    "data.path=pipe:cat " + out + "/train-000000.tar", "--set",
                                    "data.val_path=pipe:cat " + out + "/val-000000.tar", "--set",
                                    "data.cache_dir=" + dir + "/cache-knn_pipe"});
  fs::rename(out + "-away", out);
  for (const char* key : {"train_features", "train_labels", "val_features", "val_labels"})
    EXPECT_TRUE(torch::equal(streamed.at(key), cached.at(key))) << key;

  // kNN over streamed shards holding the folder's own files (ocl_pack re-encodes them) equals
  // kNN over the folder as an ImageFolder, image for image.
  std::remove((dir + "/folder/train/class_b/img_9.jpg").c_str());
  for (const std::string split : {"train", "val"}) {
    ocl::data::TarBuilder tar;
    int key = 0;
    for (int c = 0; c < 3; ++c) {
      for (int i = 0; i < (split == "train" ? 7 : 3); ++i, ++key) {
        const std::string jpeg = read_file(dir + "/folder/" + split + "/class_" +
                                           std::string(1, char('a' + c)) + "/img_" +
                                           std::to_string(i) + ".jpg"),
                          label = std::to_string(c), name = std::to_string(100000 + key);
        tar.add(name + ".jpg", reinterpret_cast<const uint8_t*>(jpeg.data()), jpeg.size());
        tar.add(name + ".cls", reinterpret_cast<const uint8_t*>(label.data()), label.size());
      }
    }
    ocl::io::write_file_atomic(dir + "/own-" + split + ".tar", tar.finish());
  }
  const auto own = knn_features(
      dir, "knn_own",
      {"--set", "data.dataset=webdataset", "--set", "data.path=pipe:cat " + dir + "/own-train.tar",
       "--set", "data.val_path=pipe:cat " + dir + "/own-val.tar", "--set",
       "data.cache_dir=" + dir + "/cache-own"});
  const auto as_folder =
      knn_features(dir, "knn_folder",
                   {"--set", "data.dataset=imagefolder", "--set", "data.path=" + dir + "/folder"});
  for (const char* key : {"train_features", "train_labels", "val_features", "val_labels"})
    EXPECT_TRUE(torch::equal(own.at(key), as_folder.at(key))) << key;
  EXPECT_EQ(pack(dir, "again", {"--output", out, "--format", "webdataset"}), 1);
  EXPECT_NE(read_file(dir + "/again.log").find("already holds train shards"), std::string::npos);
  EXPECT_EQ(pack(dir, "resume", {"--output", out, "--format", "webdataset", "--resume"}), 2);
  ASSERT_EQ(pack(dir, "over", {"--output", out, "--format", "webdataset", "--overwrite"}), 0)
      << read_file(dir + "/over.log");
}

}  // namespace
