// TensorBoard event files: TFRecords of hand-encoded tensorflow.Event protocol buffers.
#include "ocl/io/event_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "ocl/io/files.h"

namespace ocl::io {
namespace {

// The table of the reflected CRC-32C: entry i is the CRC of the byte i.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

// Protocol-buffer wire format: the few encodings the Event and Summary fields need.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {  // wire type 2
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
template <class T>
void put_fixed(std::string& out, int field, T value) {  // wire type 1 (8 bytes) or 5 (4 bytes)
  static_assert(sizeof(T) == 8 || sizeof(T) == 4);
  put_key(out, field, sizeof(T) == 8 ? 1 : 5);
  unsigned char b[sizeof(T)];
  std::memcpy(b, &value, sizeof(T));  // the machines ocl runs on are little-endian, as is protobuf
  out.append(reinterpret_cast<const char*>(b), sizeof(T));
}
void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Field numbers of tensorflow.Event (event.proto) and tensorflow.Summary (summary.proto).
constexpr int kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5,
              kEventSessionLog = 7;
constexpr int kSummaryValue = 1;
constexpr int kValueTag = 1, kValueSimpleValue = 2, kValueTensor = 8, kValueMetadata = 9;
constexpr int kMetadataPluginData = 1, kPluginDataName = 1;
constexpr int kTensorDtype = 1, kTensorShape = 2, kTensorStringVal = 8;
constexpr int kDtString = 7;  // tensorflow.DataType DT_STRING
constexpr int kSessionLogStatus = 1, kSessionLogStart = 1;

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string tensorboard_tag(const std::string& record_type, const std::string& field) {
  if (field == "epoch" || field == "global_step") return "";
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  const bool knn_figure = field.rfind("knn_", 0) == 0;
  if (record_type == "step" || ends_with(record_type, "_step")) return "train/" + field;
  if (record_type == "knn") return "knn/" + (knn_figure ? field.substr(4) : field);
  if (record_type == "shortcut") return "shortcut/" + field;
  if (record_type == "epoch" || ends_with(record_type, "_epoch")) {
    // The kNN and shortcut figures an epoch record repeats are plotted from their own records.
    if (knn_figure || field.rfind("shortcut_", 0) == 0) return "";
    for (const char* eval : {"top1", "top5", "val_loss", "best_top1", "ema_top1"}) {
      if (field == eval) return "eval/" + field;
    }
    return "epoch/" + field;
  }
  return record_type + "/" + field;
}

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& payload) {
  std::string out;
  put_le(out, payload.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += payload;
  put_le(out, masked_crc32c(payload.data(), payload.size()), 4);
  return out;
}

EventFileWriter::EventFileWriter(const std::string& folder) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  path_ = folder + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(wall_time())) +
          "." + host + "." + std::to_string(::getpid());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error("tensorboard: cannot create '" + path_ + "': " + os_error(errno));
  }
  std::string version;
  put_bytes(version, kEventFileVersion, "brain.Event:2");
  add_event(0, 0, version);
  flush();
}

EventFileWriter::~EventFileWriter() {
  try {
    flush();
  } catch (const std::exception&) {
    // A destructor cannot report it; the run's own flushes already did.
  }
  if (fd_ >= 0) ::close(fd_);
}

// An Event: wall time, step, then `body` as field `field` (0: `body` is encoded fields already).
void EventFileWriter::add_event(int64_t step, int field, const std::string& body) {
  std::string event;
  put_fixed(event, kEventWallTime, wall_time());
  put_key(event, kEventStep, 0);
  put_varint(event, static_cast<uint64_t>(step));
  if (field == 0) {
    event += body;
  } else {
    put_bytes(event, field, body);
  }
  pending_ += tfrecord(event);
}

void EventFileWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values,
                                  int64_t step) {
  std::string summary;
  for (const auto& [tag, value] : values) {
    std::string v;
    put_bytes(v, kValueTag, tag);
    put_fixed(v, kValueSimpleValue, static_cast<float>(value));
    put_bytes(summary, kSummaryValue, v);
  }
  add_event(step, kEventSummary, summary);
}

void EventFileWriter::add_text(const std::string& tag, const std::string& text, int64_t step) {
  std::string plugin, metadata, shape, tensor, value, summary;
  put_bytes(plugin, kPluginDataName, "text");
  put_bytes(metadata, kMetadataPluginData, plugin);
  put_key(tensor, kTensorDtype, 0);
  put_varint(tensor, kDtString);
  put_bytes(tensor, kTensorShape, shape);  // a scalar: no dimensions
  put_bytes(tensor, kTensorStringVal, text);
  put_bytes(value, kValueTag, tag);
  put_bytes(value, kValueTensor, tensor);
  put_bytes(value, kValueMetadata, metadata);
  put_bytes(summary, kSummaryValue, value);
  add_event(step, kEventSummary, summary);
}

void EventFileWriter::add_session_start(int64_t step) {
  std::string log;
  put_key(log, kSessionLogStatus, 0);
  put_varint(log, kSessionLogStart);
  add_event(step, kEventSessionLog, log);
}

void EventFileWriter::flush() {
  if (pending_.empty()) return;
  const std::string why = append_whole(fd_, pending_);
  pending_.clear();
  if (!why.empty()) {
    throw std::runtime_error("tensorboard: cannot write '" + path_ + "': " + why +
                             " (the last records were not written; earlier ones are whole)");
  }
}

}  // namespace ocl::io
