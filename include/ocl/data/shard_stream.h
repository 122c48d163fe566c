// A shard read as a stream of bytes, front to back: a local file, an http(s) URL (libcurl, where
// this build has it) or a `pipe:COMMAND` whose standard output is the shard, as WebDataset names
// them; and URLs made safe for messages (no user:password, no query string).
//
//   auto s = ocl::data::open_shard_stream("pipe:aws s3 cp s3://b/train-000001.tar -", {});
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "ocl/data/tar_index.h"  // ByteReader

namespace ocl::data {

/// Whether `shard` is read only as a stream: an http://, https:// or pipe: name.
bool is_remote_shard(const std::string& shard);

/// Whether this build reads http(s) URLs itself (it was built with libcurl).
bool has_http_reader();

/// `text` with the credentials of every URL in it removed: "https://user:pw@host/x?sig=..." →
/// "https://host/x?..." (the user-info and the whole query string, where signed URLs keep their
/// tokens). Every message and log line that names a shard goes through it.
std::string redact(const std::string& text);

struct ShardStreamOptions {
  /// http(s): the connection must open, and at least one byte arrive in every window, within
  /// this many seconds (libcurl's connect timeout and low-speed limit); pipe: the same for the
  /// command's output.
  double timeout_s = 60;
  /// Called at least every 100 ms while a read waits for bytes; it may throw to abandon the
  /// stream (a loader that stops does not wait out a stalled server or command).
  std::function<void()> interrupt;
};

/// A failure of the transport (connection, HTTP status, stall, a command's exit status), its
/// message naming the redacted shard and the reason.
class StreamError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ShardStream {
 public:
  virtual ~ShardStream() = default;
  /// Up to `size` bytes into `out`; 0 only at the end of a whole stream. Throws StreamError when
  /// the transport fails (an HTTP error, a timeout, a command that exits non-zero or is killed:
  /// then with the end of its stderr).
  virtual size_t read(uint8_t* out, size_t size) = 0;
  /// The stream's length when known (a local file), else kUnknownSize.
  virtual uint64_t size() const { return kUnknownSize; }
};

/// Opens a local path, an http(s) URL or a pipe: command (run directly, split on spaces, when it
/// holds no shell metacharacters, else through /bin/sh -c). Throws StreamError, naming the
/// redacted shard, when it cannot be started, and for an http(s) URL in a build without libcurl.
std::unique_ptr<ShardStream> open_shard_stream(const std::string& shard,
                                               const ShardStreamOptions& options);

/// A ByteReader over a stream for index_tar: reads must go forward (a gap is read and dropped),
/// except that the last read may be read again (index_tar looks at the first bytes twice).
ByteReader forward_reader(ShardStream& stream);

/// A whole small stream (a sizes.json) as text, at most `max_bytes`.
std::string read_all(ShardStream& stream, size_t max_bytes);

}  // namespace ocl::data
