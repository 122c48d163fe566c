// TensorBoard event files (events.out.tfevents.<seconds>.<host>.<pid>) as `tensorboard --logdir`
// and `wandb sync --sync-tensorboard` read them: TFRecords of tensorflow.Event (file_version
// "brain.Event:2" first), the few fields written encoded by hand per event.proto and summary.proto.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ocl::io {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `size` bytes, continuing from
/// `crc` (0 to start). crc32c("123456789") is 0xE3069283, the standard check value.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8 of crc32c(data).
uint32_t masked_crc32c(const void* data, size_t size);

/// One TFRecord around `payload`: its little-endian 64-bit length, the length's masked CRC, the
/// payload, the payload's masked CRC.
std::string tfrecord(const std::string& payload);

/// The TensorBoard tag of `field` of a metrics.jsonl record of `record_type`: "train/" (step
/// records), "eval/" (an epoch's top1, top5, val_loss, ...), "knn/", "shortcut/", "epoch/"; ""
/// for the axes (epoch, global_step) and what an epoch repeats from knn and shortcut.
std::string tensorboard_tag(const std::string& record_type, const std::string& field);

class EventFileWriter {
 public:
  /// Creates events.out.tfevents.<seconds>.<host>.<pid> in the existing `folder` and writes the
  /// file_version event. Throws naming the file when it cannot be created or written.
  explicit EventFileWriter(const std::string& folder);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  /// One event at `step` holding a scalar for each (tag, value), NaN and infinities included.
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step);
  /// A text summary (TensorBoard's Text tab; markdown) under `tag` at `step`.
  void add_text(const std::string& tag, const std::string& text, int64_t step);
  /// SessionLog START at `step`: TensorBoard drops the points of earlier events of this run at
  /// and after `step` (what a resumed run writes first).
  void add_session_start(int64_t step);
  /// Writes what is buffered, whole records only; throws naming the file on a failed write (the
  /// file is cut back to its last whole record).
  void flush();

 private:
  void add_event(int64_t step, int field, const std::string& body);
  std::string path_;
  int fd_ = -1;
  std::string pending_;  // whole records not yet written
};

}  // namespace ocl::io
