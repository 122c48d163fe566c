// safetensors: exact round trips of every dtype, the byte layout of Python's format checked
// independently of our writer, every malformed-input error, truncation, and atomic writes.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <torch/torch.h>

#include "ocl/io/safetensors.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using ocl::io::Metadata;
using ocl::io::parse_safetensors;
using ocl::io::read_safetensors;
using ocl::io::serialize_safetensors;
using ocl::io::TensorMap;
using ocl::io::write_safetensors;

namespace {

ocl::io::SafetensorsFile parse(const std::string& bytes, const std::string& source = "mem.st") {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), source);
}

// The message of the c10::Error `f` throws, or "<no exception>".
std::string safetensors_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "<no exception>";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

std::string le64(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// A file assembled by hand: length, header text as given, raw data.
std::string image(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

// Parsing an image built from `header` and `data` throws; the message names the source and
// contains every needle.
void expect_rejected(const std::string& header, const std::string& data,
                     const std::vector<std::string>& needles) {
  const auto msg = safetensors_error_of([&] { parse(image(header, data), "bad.safetensors"); });
  EXPECT_CONTAINS(msg, "bad.safetensors");
  for (const auto& n : needles) EXPECT_CONTAINS(msg, n);
}

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ac = a.contiguous(), bc = b.contiguous();
  return ac.nbytes() == bc.nbytes() &&
         (ac.nbytes() == 0 || std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.nbytes()) == 0);
}

template <typename T>
torch::Tensor from_values(std::vector<T> values, c10::ScalarType type) {
  return torch::from_blob(values.data(), {static_cast<int64_t>(values.size())},
                          torch::TensorOptions().dtype(type))
      .clone();
}

// A fresh directory under the system temp dir, removed at the end of the test.
class SafetensorsDir {
 public:
  SafetensorsDir() {
    std::string tmpl = (fs::temp_directory_path() / "ocl_st_XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~SafetensorsDir() { fs::remove_all(path_); }
  fs::path path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TensorMap every_dtype() {
  TensorMap m;
  m["f64"] = from_values<double>({0.1, -0.0, 1e308, 4.9e-324}, torch::kFloat64).reshape({2, 2});
  m["f32"] = torch::arange(24, torch::kFloat32).reshape({2, 3, 4}) / 7;
  // Bit patterns: 1.0, −0, smallest subnormal, largest finite, +inf, a NaN payload.
  m["f16"] =
      from_values<int16_t>({0x3C00, int16_t(0x8000), 0x0001, 0x7BFF, 0x7C00, 0x7E01}, torch::kInt16)
          .view(torch::kFloat16);
  m["bf16"] =
      from_values<int16_t>({0x3F80, int16_t(0x8000), 0x0001, 0x7F7F, 0x7F80, 0x7FC1}, torch::kInt16)
          .view(torch::kBFloat16);
  m["i64"] = from_values<int64_t>({INT64_MIN, -1, 0, INT64_MAX}, torch::kInt64);
  m["i32"] = from_values<int32_t>({INT32_MIN, -7, INT32_MAX}, torch::kInt32);
  m["i16"] = from_values<int16_t>({INT16_MIN, 3, INT16_MAX}, torch::kInt16);
  m["i8"] = from_values<int8_t>({-128, 0, 127}, torch::kInt8);
  m["u8"] = from_values<uint8_t>({0, 1, 255}, torch::kUInt8);
  m["bool"] = torch::tensor({true, false, true});
  m["scalar"] = torch::tensor(3.25);                   // 0-d
  m["empty"] = torch::zeros({0, 4}, torch::kFloat16);  // zero elements
  m["empty_mid"] = torch::zeros({3, 0, 2}, torch::kInt32);
  return m;
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtypeBitExactly) {
  const auto in = every_dtype();
  const auto out = parse(serialize_safetensors(in));
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_EQ(out.tensors.count(name), 1u) << name;
    const auto& r = out.tensors.at(name);
    EXPECT_TRUE(same_bytes(r, t)) << name << ": " << r << " vs " << t;
    EXPECT_TRUE(r.is_contiguous()) << name;
    EXPECT_EQ(r.device(), torch::Device(torch::kCPU)) << name;
  }
  EXPECT_EQ(out.tensors.at("scalar").dim(), 0);
  EXPECT_EQ(out.tensors.at("empty").sizes().vec(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(out.tensors.at("empty_mid").sizes().vec(), (std::vector<int64_t>{3, 0, 2}));
  EXPECT_TRUE(out.metadata.empty());
}

TEST(Safetensors, MetadataRoundTrips) {
  const Metadata meta{{"format", "pt"},
                      {"empty", ""},
                      {"unicode", "µ-ViT · 🦜"},
                      {"json", R"({"a": [1, "b"]})"}};
  const auto out = parse(serialize_safetensors({{"x", torch::ones({2})}}, meta));
  EXPECT_EQ(out.metadata, meta);
  // Metadata without tensors is a valid file too.
  EXPECT_EQ(parse(serialize_safetensors({}, meta)).metadata, meta);
}

TEST(Safetensors, NonContiguousInputIsWrittenInLogicalOrder) {
  const auto base = torch::arange(6, torch::kFloat32).reshape({2, 3});
  const auto t = base.t();  // [3, 2], strides [1, 3]
  ASSERT_FALSE(t.is_contiguous());
  const auto r = parse(serialize_safetensors({{"t", t}, {"s", base.slice(1, 0, 3, 2)}})).tensors;
  EXPECT_TRUE(torch::equal(r.at("t"), t));
  EXPECT_EQ(r.at("t").sizes().vec(), (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(torch::equal(r.at("s"), torch::tensor({{0.f, 2.f}, {3.f, 5.f}})));
}

TEST(Safetensors, ParsedTensorsOwnTheirMemory) {
  std::string bytes = serialize_safetensors({{"x", torch::full({4}, 2.5)}});
  const auto out = parse(bytes);
  std::fill(bytes.begin(), bytes.end(), '\xff');
  bytes.clear();
  bytes.shrink_to_fit();
  EXPECT_TRUE(torch::equal(out.tensors.at("x"), torch::full({4}, 2.5)));
}

// The layout written by Python's safetensors, assembled byte by byte without our writer:
// independent of the host, of nlohmann and of serialize_safetensors.
TEST(Safetensors, ParsesAHandBuiltFile) {
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]},)"
                             R"("w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}    )";
  const std::string length{static_cast<char>(header.size()), 0, 0, 0, 0, 0, 0, 0};
  const std::string data = std::string("\x00\x00\x80\x3f", 4) +                 // 1.0f
                           std::string("\x00\x00\x00\xc0", 4) +                 // -2.0f
                           std::string("\x07\x01\x00\x00\x00\x00\x00\x00", 8);  // 263 as int64
  ASSERT_LT(header.size(), 256u);
  const auto out = parse(length + header + data);
  EXPECT_EQ(out.metadata, (Metadata{{"format", "pt"}}));
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_TRUE(same_bytes(out.tensors.at("w"), torch::tensor({{1.0f, -2.0f}})));
  EXPECT_TRUE(same_bytes(out.tensors.at("b"), torch::tensor(int64_t{263})));
}

TEST(Safetensors, SerializedLayoutIsThePythonOne) {
  const TensorMap in{{"a", torch::arange(6, torch::kFloat32).reshape({2, 3})},
                     {"b", torch::arange(4, torch::kInt64)},
                     {"c", torch::tensor({true, false, true})}};
  const std::string bytes = serialize_safetensors(in, {{"format", "pt"}});
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ(n % 8, 0u) << "header padded to a multiple of 8, as Python does";
  const std::string text = bytes.substr(8, n);
  EXPECT_EQ(text.front(), '{');
  const json header = json::parse(text);  // trailing padding spaces are valid JSON whitespace
  EXPECT_EQ(header["__metadata__"], json({{"format", "pt"}}));
  EXPECT_EQ(header.size(), 4u);

  const auto data_size = bytes.size() - 8 - n;
  uint64_t total = 0;
  for (const auto& [name, t] : in) {
    const auto& e = header.at(name);
    EXPECT_EQ(e.at("shape").get<std::vector<int64_t>>(), t.sizes().vec()) << name;
    const auto offsets = e.at("data_offsets").get<std::vector<uint64_t>>();
    ASSERT_EQ(offsets.size(), 2u);
    ASSERT_LE(offsets[1], data_size);
    ASSERT_EQ(offsets[1] - offsets[0], t.nbytes()) << name;
    EXPECT_EQ(offsets[0] % t.element_size(), 0u) << name << " is aligned to its item size";
    EXPECT_EQ(std::memcmp(bytes.data() + 8 + n + offsets[0], t.data_ptr(), t.nbytes()), 0) << name;
    total += t.nbytes();
  }
  EXPECT_EQ(header["a"]["dtype"], "F32");
  EXPECT_EQ(header["b"]["dtype"], "I64");
  EXPECT_EQ(header["c"]["dtype"], "BOOL");
  EXPECT_EQ(total, data_size) << "the data area holds the tensors and nothing else";
}

TEST(Safetensors, RejectsImagesShorterThanTheLength) {
  for (size_t size = 0; size < 8; ++size) {
    const std::string bytes(size, '\0');
    const auto msg = safetensors_error_of([&] { parse(bytes, "tiny.st"); });
    EXPECT_CONTAINS(msg, "tiny.st");
    EXPECT_CONTAINS(msg, std::to_string(size) + " bytes");
  }
}

TEST(Safetensors, RejectsHeaderLengthBeyondFileOrLimit) {
  auto msg = safetensors_error_of([] { parse(le64(1000) + "{}", "short.st"); });
  EXPECT_CONTAINS(msg, "short.st");
  EXPECT_CONTAINS(msg, "header length 1000");
  // Over the 100 MB limit: rejected before allocating, whatever the file size.
  msg = safetensors_error_of([] { parse(le64(200'000'000) + "{}", "huge.st"); });
  EXPECT_CONTAINS(msg, "header length 200000000");
  EXPECT_CONTAINS(msg, "100 MB");
  // 8 + N wraps around to 7 in 64 bits: must not pass as "fits".
  msg = safetensors_error_of([] { parse(le64(UINT64_MAX) + "{}", "wrap.st"); });
  EXPECT_CONTAINS(msg, std::to_string(UINT64_MAX));
}

TEST(Safetensors, RejectsHeadersThatAreNotJsonObjects) {
  expect_rejected("{not json}", "", {"not valid JSON"});
  expect_rejected(R"({"w": {"dtype": "F32")", "", {"not valid JSON"});
  expect_rejected("[1, 2, 3]", "", {"must be a JSON object", "array"});
  expect_rejected("  42", "", {"must be a JSON object"});
  // nlohmann would stop at the NUL and accept "{}".
  expect_rejected(std::string("{}\0\0", 4), "", {"not valid JSON", "NUL"});
}

TEST(Safetensors, RejectsEntriesWithMissingOrMistypedFields) {
  expect_rejected(R"({"w": 3})", "", {"'w'", "must be a JSON object", "3"});
  expect_rejected(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "", {"'w'", "no \"dtype\""});
  expect_rejected(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "",
                  {"'w'", "no \"shape\""});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1]}})", "", {"'w'", "no \"data_offsets\""});
  expect_rejected(R"({"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", "",
                  {"'w'", "\"dtype\" must be a string", "5"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", "",
                  {"'w'", "\"shape\" must be an array", "\"1\""});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "",
                  {"'w'", "must hold integers", "1.5"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}})", "",
                  {"'w'", "must hold integers"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})", "",
                  {"'w'", "two non-negative integers", "0-4"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "1234",
                  {"'w'", "two non-negative integers", "[0]"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", "1234",
                  {"'w'", "two non-negative integers", "[0,4,8]"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 4]}})", "1234",
                  {"'w'", "two non-negative integers", "[-4,4]"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})", "1234",
                  {"'w'", "two non-negative integers"});
}

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected(R"({"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}})", "x",
                  {"'w'", "unsupported dtype \"Q7\"", "BF16"});
  // Lower case is not the spelling of the format.
  expect_rejected(R"({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})", "1234",
                  {"'w'", "\"f32\""});
}

TEST(Safetensors, RejectsNegativeAndOverflowingShapes) {
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}})",
                  "12345678", {"'w'", "negative dimension -1"});
  // 2^32 · 2^32 · 16 wraps to 0 in 64 bits: must not be taken for an empty tensor.
  expect_rejected(
      R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 0]}})",
      "", {"'w'", "overflows", "4294967296"});
  // Fits int64 as an element count, but not as bytes.
  expect_rejected(
      R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", "",
      {"'w'", "overflows", "4611686018427387904"});
  expect_rejected(
      R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", "",
      {"'w'", "overflows int64", "18446744073709551615"});
}

TEST(Safetensors, RejectsBadDataOffsets) {
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", "12345678",
                  {"'w'", "[8,4]", "begin > end"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [250], "data_offsets": [0, 1000]}})",
                  "12345678", {"'w'", "[0,1000]", "8-byte data area"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", "1234",
                  {"'w'", "hold 4 bytes", "F32 [2] needs 8"});
  expect_rejected(R"({"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]}})", "",
                  {"'w'", "hold 0 bytes", "needs 4"});
}

TEST(Safetensors, RejectsOverlapsHolesAndTrailingBytes) {
  expect_rejected(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                  R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                  "123456789012", {"'b'", "[4, 12]", "overlaps tensor 'a'", "[0, 8]"});
  // Two tensors on the same bytes.
  expect_rejected(R"({"a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},)"
                  R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                  "1234", {"overlaps", "'a'", "'b'"});
  // A zero-element tensor inside another one's bytes.
  expect_rejected(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                  R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                  "12345678", {"'e'", "overlaps tensor 'a'"});
  expect_rejected(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", "12345678",
                  {"bytes [0, 4)", "'a'", "belong to no tensor"});
  expect_rejected(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", "12345678",
                  {"last 4 bytes", "belong to no tensor"});
}

TEST(Safetensors, RejectsNonStringMetadata) {
  expect_rejected(R"({"__metadata__": {"epoch": 3}})", "", {"metadata value of 'epoch'", "3"});
  expect_rejected(R"({"__metadata__": {"a": "x", "nested": {"b": "c"}}})", "",
                  {"'nested'", "must be a string", "{\"b\":\"c\"}"});
  expect_rejected(R"({"__metadata__": ["format", "pt"]})", "",
                  {"__metadata__", "must be an object of strings", "[\"format\",\"pt\"]"});
}

TEST(Safetensors, RejectsDuplicateKeys) {
  expect_rejected(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                  R"( "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                  "ab", {"duplicate tensor name 'w'"});
  expect_rejected(R"({"w": {"dtype": "U8", "dtype": "I8", "shape": [1], "data_offsets": [0, 1]}})",
                  "a", {"'w'", "duplicate key 'dtype'"});
}

TEST(Safetensors, RejectsDeepNestingAndInvalidBools) {
  expect_rejected(R"({"w": {"dtype": "U8", "shape": [[[1]]], "data_offsets": [0, 1]}})", "a",
                  {"'w'", "\"shape\"", "deeper"});
  expect_rejected(
      std::string(R"({"w": {"x": )") + std::string(100000, '[') + std::string(100000, ']') + "}}",
      "", {"'w'", "\"x\"", "deeper"});
  expect_rejected(R"({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}})",
                  std::string("\x01\x00\x02", 3), {"'m'", "byte 2 is 2"});
}

// Every proper prefix of a valid file is invalid: each must throw a c10::Error, never crash or
// read past its end (run under ASan to see the latter).
TEST(Safetensors, EveryTruncationThrows) {
  TensorMap m{{"w", torch::randn({3, 5})},
              {"s", torch::tensor(1.5, torch::kFloat16)},
              {"e", torch::zeros({0})},
              {"m", torch::tensor({true, false})}};
  const auto bytes = serialize_safetensors(m, {{"format", "pt"}});
  ASSERT_NO_THROW(parse(bytes));
  for (size_t len = 0; len < bytes.size(); ++len) {
    // A fresh heap copy of exactly `len` bytes, so ASan flags any read beyond it.
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + len);
    EXPECT_THROW(parse_safetensors(prefix.data(), prefix.size(), "cut"), c10::Error) << len;
  }
}

// Random corruption may still be a valid file, but must never be anything but a result or a
// c10::Error.
TEST(Safetensors, CorruptedBytesThrowOrParseButNeverCrash) {
  const auto bytes =
      serialize_safetensors({{"w", torch::randn({2, 3})}, {"i", torch::arange(3)}}, {{"k", "v"}});
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> pos(0, bytes.size() - 1);
  static const char kAlphabet[] = "{}[]\",:0123456789-eE. \x00\xff";
  const std::string alphabet(kAlphabet, sizeof(kAlphabet) - 1);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> b(bytes.begin(), bytes.end());
    for (int k = 0; k < 1 + i % 3; ++k) b[pos(rng)] = alphabet[rng() % alphabet.size()];
    try {
      parse_safetensors(b.data(), b.size(), "fuzz");
    } catch (const c10::Error&) {
    }
  }
}

TEST(Safetensors, SerializeRejectsInvalidInput) {
  auto msg = safetensors_error_of([] { serialize_safetensors({{"", torch::ones({1})}}); });
  EXPECT_CONTAINS(msg, "non-empty");
  msg = safetensors_error_of([] { serialize_safetensors({{"__metadata__", torch::ones({1})}}); });
  EXPECT_CONTAINS(msg, "__metadata__");
  msg = safetensors_error_of([] { serialize_safetensors({{"u", torch::Tensor()}}); });
  EXPECT_CONTAINS(msg, "'u' is undefined");
  msg = safetensors_error_of([] {
    serialize_safetensors({{"z", torch::ones({2}, torch::kComplexFloat)}});
  });
  EXPECT_CONTAINS(msg, "'z'");
  EXPECT_CONTAINS(msg, "ComplexFloat");
  msg = safetensors_error_of([] {
    serialize_safetensors({{"x", torch::ones({1})}}, {{"k", "\xff\xfe"}});
  });
  EXPECT_CONTAINS(msg, "UTF-8");
}

TEST(Safetensors, WriteAndReadFileRoundTrip) {
  SafetensorsDir dir;
  const auto path = (dir.path() / "model.safetensors").string();
  const auto in = every_dtype();
  const Metadata meta{{"format", "pt"}};
  write_safetensors(path, in, meta);
  EXPECT_EQ(slurp(path), serialize_safetensors(in, meta));
  const auto out = read_safetensors(path);
  EXPECT_EQ(out.metadata, meta);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) EXPECT_TRUE(same_bytes(out.tensors.at(name), t)) << name;

  // Overwriting replaces the old contents.
  write_safetensors(path, {{"only", torch::ones({2})}});
  EXPECT_EQ(read_safetensors(path).tensors.size(), 1u);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(Safetensors, ReadFileErrorsNameThePath) {
  SafetensorsDir dir;
  const auto missing = (dir.path() / "nope.safetensors").string();
  auto msg = safetensors_error_of([&] { read_safetensors(missing); });
  EXPECT_CONTAINS(msg, missing);
  EXPECT_CONTAINS(msg, "No such file");
  msg = safetensors_error_of([&] { read_safetensors(dir.path().string()); });
  EXPECT_CONTAINS(msg, "not a regular file");

  // A truncated file on disk: the data is short, the header intact.
  const auto bytes = serialize_safetensors({{"w", torch::randn({4, 4})}});
  const auto cut = (dir.path() / "cut.safetensors").string();
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  msg = safetensors_error_of([&] { read_safetensors(cut); });
  EXPECT_CONTAINS(msg, cut);
  EXPECT_CONTAINS(msg, "'w'");
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, 5);
  EXPECT_CONTAINS(safetensors_error_of([&] { read_safetensors(cut); }), "5 bytes");
}

TEST(Safetensors, AFifoIsRefusedWithoutBlocking) {
  SafetensorsDir dir;
  const auto fifo = (dir.path() / "weights.safetensors").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto msg =
      safetensors_error_of([&] { read_safetensors(fifo); });  // would hang on a blocking open
  EXPECT_CONTAINS(msg, fifo);
  EXPECT_CONTAINS(msg, "is not a regular file");
}

TEST(Safetensors, WriteIntoMissingDirectoryThrowsNamingThePath) {
  SafetensorsDir dir;
  const auto path = (dir.path() / "no" / "such" / "dir" / "x.safetensors").string();
  const auto msg = safetensors_error_of([&] {
    write_safetensors(path, {{"x", torch::ones({2})}});
  });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "No such file or directory");
  EXPECT_FALSE(fs::exists(path));
}

TEST(Safetensors, FailedWriteKeepsTheExistingFileAndLeavesNoTemporary) {
  SafetensorsDir dir;
  const auto path = (dir.path() / "ckpt.safetensors").string();
  write_safetensors(path, {{"x", torch::arange(5)}});
  const std::string before = slurp(path);

  // Fails before touching the disk: invalid names.
  EXPECT_THROW(write_safetensors(path, {{"x", torch::ones({3})}, {"", torch::ones({1})}}),
               c10::Error);
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", torch::ones({1})}}), c10::Error);
  EXPECT_EQ(slurp(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});

  // A folder in the way is refused before anything is written (the rename over it would fail
  // after the temporary file was written; over a device or a link it would succeed).
  const auto blocked = dir.path() / "blocked";
  fs::create_directories(blocked / "child");
  const auto msg = safetensors_error_of([&] {
    write_safetensors(blocked.string(), {{"x", torch::ones({1000})}});
  });
  EXPECT_CONTAINS(msg, blocked.string());
  EXPECT_CONTAINS(msg, "it exists and is a folder");
  EXPECT_TRUE(fs::is_directory(blocked / "child"));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"blocked", "ckpt.safetensors"}));
  EXPECT_EQ(slurp(path), before);
}
