// Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) with ocl's own writers: small
// valid files of each kind, and the damaged ones the unit tests already know (truncated,
// relabelled, out of range). Run by scripts/fuzz.sh --seeds; its output is committed, so the
// corpora change only when this program does.
//
//   ocl_fuzz_seeds OUT_DIR CONFIGS_DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include <sys/stat.h>
#include <torch/torch.h>

#include "ocl/data/jpeg.h"
#include "ocl/data/packed.h"
#include "ocl/data/png.h"
#include "ocl/io/config.h"
#include "ocl/io/safetensors.h"

namespace fs = std::filesystem;
using ocl::data::Image;

namespace {

std::string out_root;

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = fs::path(out_root) / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string bytes_of(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A smooth colour pattern with an edge, so that JPEG blocks and PNG filters all have work.
Image pattern(int h, int w) {
  Image image;
  image.height = h;
  image.width = w;
  image.pixels.resize(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = image.pixels.data() + (static_cast<size_t>(y) * w + x) * 3;
      p[0] = static_cast<uint8_t>(x * 255 / std::max(w - 1, 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(h - 1, 1));
      p[2] = static_cast<uint8_t>(x > w / 2 ? 200 : 40);
    }
  }
  return image;
}

void safetensors_seeds() {
  ocl::io::TensorMap t;
  t["f64"] = torch::arange(6, torch::kDouble).reshape({2, 3});
  t["f32"] = torch::linspace(-1, 1, 8).reshape({2, 2, 2});
  t["f16"] = torch::arange(4, torch::kHalf);
  t["bf16"] = torch::arange(4, torch::kBFloat16);
  t["i64"] = torch::tensor({-1, 0, 7}, torch::kLong);
  t["i32"] = torch::tensor({1, 2}, torch::kInt);
  t["i16"] = torch::tensor({3}, torch::kShort);
  t["i8"] = torch::tensor({-4, 4}, torch::kChar);
  t["u8"] = torch::tensor({255, 0}, torch::kByte);
  t["bool"] = torch::tensor({true, false, true});
  t["scalar"] = torch::tensor(3.5);
  t["empty"] = torch::zeros({0, 4});
  const std::string all = ocl::io::serialize_safetensors(t, {{"format", "pt"}, {"ocl", "seed"}});
  seed("safetensors", "all_dtypes.safetensors", all);
  ocl::io::TensorMap vit;
  vit["cls_token"] = torch::zeros({1, 1, 8});
  vit["patch_embed.proj.weight"] = torch::ones({8, 3, 2, 2});
  vit["patch_embed.proj.bias"] = torch::zeros({8});
  seed("safetensors", "vit_names.safetensors", ocl::io::serialize_safetensors(vit));
  seed("safetensors", "empty.safetensors", ocl::io::serialize_safetensors({}));
  // What the tests reject: cut short, cut inside the header, a header length past the end, a
  // BOOL byte of 2, two tensors sharing bytes, a hole in the data area.
  seed("safetensors", "truncated.safetensors", all.substr(0, all.size() - 5));
  seed("safetensors", "cut_header.safetensors", all.substr(0, 40));
  std::string huge = all;
  huge[5] = 0x7f;
  seed("safetensors", "header_length_past_end.safetensors", huge);
  auto with_header = [](const std::string& json, const std::string& data) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
    return out + json + data;
  };
  seed("safetensors", "bool_byte_2.safetensors",
       with_header(R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", "\x01\x02"));
  seed("safetensors", "overlap.safetensors",
       with_header(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                   "abc"));
  seed("safetensors", "hole.safetensors",
       with_header(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "xy"));
  seed("safetensors", "metadata_not_string.safetensors",
       with_header(R"({"__metadata__":{"k":1},"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})",
                   "z"));
}

// A pack written by PackWriter, as fuzz input: index.ocl, then each shard after a marker.
std::string pack_seed(ocl::data::PackEncoding encoding, int records, uint64_t max_shard_bytes) {
  const fs::path dir =
      fs::temp_directory_path() / ("ocl-fuzz-seed-pack-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ocl::data::PackWriterOptions options;
  options.encoding = encoding;
  options.max_shard_bytes = max_shard_bytes;
  {
    ocl::data::PackWriter writer(dir.string(), {"cat", "dog"}, options);
    for (int i = 0; i < records; ++i) {
      const Image image = pattern(6 + 3 * i, 9 + 2 * i);
      if (encoding == ocl::data::PackEncoding::Jpeg) {
        const auto jpeg = ocl::data::encode_jpeg(image, 80);
        writer.add(jpeg.data(), jpeg.size(), i % 2, image.height, image.width);
      } else {
        writer.add(image.pixels.data(), image.pixels.size(), i % 2, image.height, image.width);
      }
    }
    writer.finish();
  }
  std::vector<std::string> parts = {read_all(ocl::data::pack_index_path(dir.string()))};
  for (uint32_t s = 0; fs::exists(ocl::data::pack_shard_path(dir.string(), s)); ++s)
    parts.push_back(read_all(ocl::data::pack_shard_path(dir.string(), s)));
  fs::remove_all(dir);
  return ocl::fuzz::join_parts(parts);
}

void pack_seeds() {
  seed("pack", "jpeg_one_shard", pack_seed(ocl::data::PackEncoding::Jpeg, 3, 1 << 20));
  seed("pack", "jpeg_three_shards", pack_seed(ocl::data::PackEncoding::Jpeg, 3, 64));
  seed("pack", "raw_two_shards", pack_seed(ocl::data::PackEncoding::Raw, 2, 200));
  const std::string one = pack_seed(ocl::data::PackEncoding::Jpeg, 2, 1 << 20);
  seed("pack", "shard_truncated", one.substr(0, one.size() - 30));
  const auto parts =
      ocl::fuzz::split_parts(reinterpret_cast<const uint8_t*>(one.data()), one.size());
  seed("pack", "index_only", std::string(parts[0]));
}

void image_seeds() {
  const Image small = pattern(16, 16);
  const Image odd = pattern(17, 23);
  const auto baseline = bytes_of(ocl::data::encode_jpeg(small, 90));
  seed("image", "baseline.jpg", baseline);
  seed("image", "odd_size.jpg", bytes_of(ocl::data::encode_jpeg(odd, 75)));
  seed("image", "progressive.jpg",
       bytes_of(ocl::data::encode_jpeg(odd, {.quality = 85, .progressive = true})));
  seed("image", "grey.jpg", bytes_of(ocl::data::encode_jpeg(small, {.grey = true})));
  seed("image", "truncated.jpg", baseline.substr(0, baseline.size() * 6 / 10));
  const auto png = bytes_of(ocl::data::encode_png(odd));
  seed("image", "rgb.png", png);
  std::string bad_crc = png;
  bad_crc[bad_crc.size() - 20] ^= 0x55;
  seed("image", "bad_crc.png", bad_crc);
  // PPM and a 24-bit BMP, written by hand (formats OpenCV's imgcodecs reads).
  std::string ppm = "P6\n4 3\n255\n";
  for (int i = 0; i < 4 * 3 * 3; ++i) ppm += static_cast<char>(i * 7);
  seed("image", "small.ppm", ppm);
  const int w = 3, h = 2, row = (w * 3 + 3) / 4 * 4;
  std::string bmp(54 + row * h, '\0');
  auto put = [&](size_t at, uint32_t v, int n) {
    for (int i = 0; i < n; ++i) bmp[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  bmp[0] = 'B';
  bmp[1] = 'M';
  put(2, static_cast<uint32_t>(bmp.size()), 4);
  put(10, 54, 4);
  put(14, 40, 4);
  put(18, w, 4);
  put(22, h, 4);
  put(26, 1, 2);
  put(28, 24, 2);
  put(34, static_cast<uint32_t>(row * h), 4);
  for (int i = 54; i < static_cast<int>(bmp.size()); ++i) bmp[i] = static_cast<char>(i * 13);
  seed("image", "small.bmp", bmp);
  // The region decoder takes JPEGs only.
  for (const auto& entry : fs::directory_iterator(fs::path(out_root) / "image")) {
    if (entry.path().extension() == ".jpg")
      seed("jpeg_region", entry.path().filename().string(), read_all(entry.path()));
  }
  seed("jpeg_region", "large_for_scales.jpg",
       bytes_of(ocl::data::encode_jpeg(pattern(64, 80), 70)));
}

void cifar_seeds() {
  std::string batch;
  for (int r = 0; r < 3; ++r) {
    batch += static_cast<char>(r * 3);  // label
    for (int i = 0; i < 3072; ++i) batch += static_cast<char>((i * (r + 1)) & 0xff);
  }
  seed("cifar", "three_records.bin", batch);
  seed("cifar", "with_names",
       ocl::fuzz::join_parts({batch,
                              "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\n"
                              "ship\ntruck\n\n"}));
  seed("cifar", "truncated.bin", batch.substr(0, batch.size() - 100));
  std::string c100;  // (coarse, fine) labels
  for (int r = 0; r < 2; ++r) {
    c100 += static_cast<char>(r);
    c100 += static_cast<char>(40 + r);
    c100 += std::string(3072, static_cast<char>(r * 90));
  }
  seed("cifar", "cifar100_two_records.bin", c100);
}

void config_seeds(const std::string& configs) {
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() == ".yaml")
      seed("config", entry.path().filename().string(), read_all(entry.path()));
  }
  const std::string quick = read_all(fs::path(configs) / "quickstart.yaml");
  seed("config", "quickstart_with_overrides",
       ocl::fuzz::join_parts({quick,
                              "optim.lr=2e-3\nmodel.depth=2\noptim.betas=[0.9, 0.95]\n"
                              "mask.ratio=0.4\ndata.augment=none"}));
  seed("config", "defaults_written", ocl::io::to_yaml(ocl::io::Config{}));
  seed("config", "empty", "");
  seed("config", "unknown_key", "model:\n  arch: vit_base_patch16\n  colour: red\n");
  seed("config", "betas_of_three", "optim:\n  betas: [0.9, 0.95, 0.99]\n");
  seed("config", "bad_override", ocl::fuzz::join_parts({"", "optim.lr\nmodel=3\ntrain.epochs=[1"}));
}

void state_json_seeds() {
  seed("state_json", "written.json",
       R"({
  "epoch": 3,
  "format_version": 1,
  "global_step": 307,
  "nonfinite_skips": 0,
  "seed": 0,
  "step_in_epoch": 7,
  "torch_version": "2.6.0",
  "world_size": 4
}
)");
  seed("state_json", "fraction.json",
       R"({"format_version": 1, "epoch": 1.5, "step_in_epoch": 0, "global_step": 0,
"nonfinite_skips": 0, "world_size": 1, "seed": 0})");
  seed("state_json", "cut.json", R"({"format_version": 1, "epoch": )");
  seed("state_json", "huge_seed.json",
       R"({"format_version": 1, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
"nonfinite_skips": 0, "world_size": 1, "seed": 18446744073709551615})");
}

}  // namespace

// Tar archives: the unit tests' fixtures, which Python's tarfile wrote in the pax, GNU and ustar
// formats (scripts/make_tar_fixtures.py), and two damaged ones.
void tar_seeds(const std::string& configs_dir) {
  const fs::path fixtures = fs::path(configs_dir).parent_path() / "tests" / "fixtures" / "tar";
  for (const char* name : {"pax.tar", "gnu.tar", "ustar.tar"}) {
    const std::string bytes = read_all(fixtures / name);
    if (bytes.empty()) throw std::runtime_error("no fixture " + (fixtures / name).string());
    seed("tar", name, bytes);
  }
  const std::string pax = read_all(fixtures / "pax.tar");
  seed("tar", "pax_cut_in_data.tar", pax.substr(0, 4608 + 100));
  std::string bad_checksum = read_all(fixtures / "ustar.tar");
  bad_checksum[148] = '7';
  seed("tar", "ustar_bad_checksum.tar", bad_checksum);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: ocl_fuzz_seeds OUT_DIR CONFIGS_DIR\n";
    return 2;
  }
  out_root = argv[1];
  safetensors_seeds();
  pack_seeds();
  image_seeds();
  cifar_seeds();
  config_seeds(argv[2]);
  state_json_seeds();
  tar_seeds(argv[2]);
  std::cout << "ocl_fuzz_seeds: corpora written under " << out_root << "\n";
  return 0;
}
