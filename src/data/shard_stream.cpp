// Shards as byte streams: local files, http(s) through libcurl, pipe: commands (see
// include/ocl/data/shard_stream.h).
#include "ocl/data/shard_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>

#ifdef OCL_WITH_CURL
#include <curl/curl.h>
#endif

extern char** environ;

namespace ocl::data {
namespace {

constexpr size_t kStderrKept = 2048;  // the end of a failed command's stderr, for its message
constexpr int kSliceMs = 100;  // a waiting read calls ShardStreamOptions::interrupt this often

std::string seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", s);
  return text;
}

bool has_prefix(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

class FileStream : public ShardStream {
 public:
  explicit FileStream(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      const std::string why = fd_ < 0 ? std::strerror(errno) : "not a regular file";
      if (fd_ >= 0) ::close(fd_);
      throw StreamError("shard '" + path + "' cannot be opened: " + why);
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileStream() override { ::close(fd_); }
  size_t read(uint8_t* out, size_t size) override {
    for (;;) {
      const ssize_t n = ::read(fd_, out, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) throw StreamError("cannot read '" + path_ + "': " + std::strerror(errno));
    }
  }
  uint64_t size() const override { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The command's stdout through a pipe; its stderr kept (the last kStderrKept bytes) for the
// message when it fails. Polled together so that a chatty stderr cannot block the command.
class PipeStream : public ShardStream {
 public:
  PipeStream(const std::string& shard, const ShardStreamOptions& o)
      : name_(redact(shard)),
        timeout_ms_(static_cast<int>(std::ceil(o.timeout_s * 1000))),
        interrupt_(o.interrupt) {
    const std::string command = shard.substr(5);
    std::vector<std::string> args;
    if (command.find_first_of("|&;<>()$`\\\"'*?[]#~=%{}\n") != std::string::npos) {
      args = {"/bin/sh", "-c", command};
    } else {
      std::istringstream words(command);
      for (std::string w; words >> w;) args.push_back(w);
    }
    if (args.empty()) throw StreamError("shard '" + name_ + "': an empty pipe: command");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw StreamError("pipe: " + std::string(strerror(errno)));
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]), ::close(out[1]);
      throw StreamError("pipe: " + std::string(strerror(errno)));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);  // the command must die of a closed pipe, as in a shell
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    const int rc = ::posix_spawnp(&pid_, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(out[1]), ::close(err[1]);
    out_ = out[0], err_ = err[0];
    if (rc != 0) {
      pid_ = -1;
      close_fds();
      throw StreamError("shard '" + name_ + "': cannot start '" + redact(args[0]) +
                        "': " + std::strerror(rc));
    }
  }
  ~PipeStream() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);  // stopped early (a retry, a stopped epoch)
      ::waitpid(pid_, nullptr, 0);
    }
    close_fds();
  }
  size_t read(uint8_t* out, size_t size) override {
    int waited_ms = 0;  // since the last bytes
    while (out_ >= 0) {
      pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
      const int slice = std::min(kSliceMs, timeout_ms_ - waited_ms);
      const int n = ::poll(fds, err_ >= 0 ? 2 : 1, slice);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        if ((waited_ms += slice) >= timeout_ms_) {
          throw StreamError("shard '" + name_ + "': no output for " +
                            seconds(timeout_ms_ / 1000.0) + " (data.stream_timeout_s)" +
                            stderr_text());
        }
        if (interrupt_) interrupt_();
        continue;
      }
      waited_ms = 0;
      if (err_ >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) drain_stderr();
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t got = ::read(out_, out, size);
        if (got < 0 && errno == EINTR) continue;
        if (got > 0) return static_cast<size_t>(got);
        ::close(out_), out_ = -1;  // the end: the exit status says whether it is whole
      }
    }
    finish();
    return 0;
  }

 private:
  void drain_stderr() {
    char buf[4096];
    const ssize_t got = ::read(err_, buf, sizeof(buf));
    if (got <= 0) {
      if (got == 0 || errno != EINTR) ::close(err_), err_ = -1;
      return;
    }
    stderr_.append(buf, static_cast<size_t>(got));
    if (stderr_.size() > kStderrKept) stderr_.erase(0, stderr_.size() - kStderrKept);
  }
  std::string stderr_text() const {
    std::string t = stderr_;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    return t.empty() ? "" : "; its stderr ends: " + redact(printable(t, kStderrKept));
  }
  void finish() {
    if (pid_ <= 0) return;
    while (err_ >= 0) {
      pollfd fd{err_, POLLIN, 0};
      if (::poll(&fd, 1, timeout_ms_) <= 0) break;
      drain_stderr();
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    const std::string how = WIFEXITED(status)
                                ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                : "was killed by signal " + std::to_string(WTERMSIG(status));
    throw StreamError("shard '" + name_ + "': the command " + how + stderr_text());
  }
  void close_fds() {
    if (out_ >= 0) ::close(out_), out_ = -1;
    if (err_ >= 0) ::close(err_), err_ = -1;
  }

  std::string name_;
  int timeout_ms_;
  std::function<void()> interrupt_;
  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
  std::string stderr_;
};

#ifdef OCL_WITH_CURL
// libcurl's multi interface turns its push of received data into reads: each read performs the
// transfer until some bytes are buffered (at most what one perform call delivers).
class HttpStream : public ShardStream {
 public:
  HttpStream(const std::string& url, const ShardStreamOptions& o)
      : name_(redact(url)),
        timeout_s_(o.timeout_s),
        interrupt_(o.interrupt),
        last_data_(Clock::now()) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    easy_ = curl_easy_init();
    multi_ = curl_multi_init();
    if (!easy_ || !multi_) throw StreamError("shard '" + name_ + "': libcurl cannot start");
    const long timeout = std::max(1L, static_cast<long>(std::ceil(o.timeout_s)));
    curl_easy_setopt(easy_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(easy_, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT, timeout);
    curl_easy_setopt(easy_, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy_, CURLOPT_LOW_SPEED_TIME, timeout);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &HttpStream::on_data);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
    curl_multi_add_handle(multi_, easy_);
  }
  ~HttpStream() override {
    curl_multi_remove_handle(multi_, easy_);
    curl_easy_cleanup(easy_);
    curl_multi_cleanup(multi_);
  }
  size_t read(uint8_t* out, size_t size) override {
    while (pos_ == buffer_.size() && !done_) {
      buffer_.clear(), pos_ = 0;
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
        if (m->msg == CURLMSG_DONE) done_ = true, result_ = m->data.result;
      }
      if (done_ || !buffer_.empty()) continue;
      curl_multi_poll(multi_, nullptr, 0, kSliceMs, nullptr);
      if (interrupt_) interrupt_();
      // libcurl's low-speed limit averages over several seconds; a stall is named on time.
      if (std::chrono::duration<double>(Clock::now() - last_data_).count() > timeout_s_)
        throw StreamError("shard '" + name_ + "': no data for " + seconds(timeout_s_) +
                          " (data.stream_timeout_s)");
    }
    if (pos_ < buffer_.size()) {
      const size_t n = std::min(size, buffer_.size() - pos_);
      std::memcpy(out, buffer_.data() + pos_, n);
      pos_ += n;
      return n;
    }
    if (result_ != CURLE_OK) {
      long code = 0;
      curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &code);
      std::string why = error_[0] ? error_ : curl_easy_strerror(result_);
      if (result_ == CURLE_OPERATION_TIMEDOUT) why += " (data.stream_timeout_s)";
      throw StreamError("shard '" + name_ + "': " + redact(why) +
                        (code >= 400 ? " (HTTP " + std::to_string(code) + ")" : ""));
    }
    return 0;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static size_t on_data(char* data, size_t one, size_t n, void* self) {
    auto* s = static_cast<HttpStream*>(self);
    s->buffer_.append(data, one * n);
    s->last_data_ = Clock::now();
    return one * n;
  }
  std::string name_;
  double timeout_s_;
  std::function<void()> interrupt_;
  Clock::time_point last_data_;
  CURL* easy_ = nullptr;
  CURLM* multi_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
  std::string buffer_;
  size_t pos_ = 0;
  bool done_ = false;
  CURLcode result_ = CURLE_OK;
};
#endif

}  // namespace

bool is_remote_shard(const std::string& shard) {
  return has_prefix(shard, "http://") || has_prefix(shard, "https://") ||
         has_prefix(shard, "pipe:");
}

bool has_http_reader() {
#ifdef OCL_WITH_CURL
  return true;
#else
  return false;
#endif
}

std::string redact(const std::string& text) {
  std::string out;
  size_t pos = 0;
  for (size_t scheme; (scheme = text.find("://", pos)) != std::string::npos;) {
    const size_t host = scheme + 3;
    const size_t end = std::min(text.find_first_of(" \t\n'\"", host), text.size());
    const size_t path = std::min(text.find_first_of("/?#", host), end);
    const size_t at = text.rfind('@', path);
    out.append(text, pos, host - pos);
    const size_t from = at != std::string::npos && at >= host && at < path ? at + 1 : host;
    std::string rest = text.substr(from, end - from);
    if (const size_t q = rest.find('?'); q != std::string::npos) rest = rest.substr(0, q) + "?...";
    out += rest;
    pos = end;
  }
  return out + text.substr(pos);
}

std::unique_ptr<ShardStream> open_shard_stream(const std::string& shard,
                                               const ShardStreamOptions& options) {
  if (has_prefix(shard, "pipe:")) return std::make_unique<PipeStream>(shard, options);
  if (has_prefix(shard, "http://") || has_prefix(shard, "https://")) {
#ifdef OCL_WITH_CURL
    return std::make_unique<HttpStream>(shard, options);
#else
    throw StreamError("shard '" + redact(shard) +
                      "': this build of ocl has no libcurl (built with OCL_WITH_CURL=OFF or "
                      "without libcurl4-openssl-dev): name the shards 'pipe:curl -sfL URL' "
                      "instead");
#endif
  }
  return std::make_unique<FileStream>(shard);
}

ByteReader forward_reader(ShardStream& stream) {
  struct State {
    uint64_t pos = 0;  // bytes taken from the stream
    uint64_t last_at = 0;
    std::vector<uint8_t> last;  // the last read, which may be read again
  };
  auto state = std::make_shared<State>();
  return [&stream, state](uint64_t offset, size_t size, uint8_t* out) -> size_t {
    State& s = *state;
    size_t done = 0;
    if (offset < s.pos) {  // again from the last read
      if (offset < s.last_at || s.pos != s.last_at + s.last.size())
        throw std::logic_error("forward_reader: a read before the last one");
      done = static_cast<size_t>(std::min<uint64_t>(size, s.pos - offset));
      std::memcpy(out, s.last.data() + (offset - s.last_at), done);
    }
    uint8_t skip[4096];
    while (s.pos < offset) {  // a gap: read and drop
      const size_t n =
          stream.read(skip, static_cast<size_t>(std::min<uint64_t>(sizeof(skip), offset - s.pos)));
      if (n == 0) return 0;
      s.pos += n;
    }
    while (done < size) {
      const size_t n = stream.read(out + done, size - done);
      if (n == 0) break;
      done += n, s.pos += n;
    }
    if (size <= 512) {
      s.last_at = offset;
      s.last.assign(out, out + done);
    } else {
      s.last.clear(), s.last_at = s.pos;
    }
    return done;
  };
}

std::string read_all(ShardStream& stream, size_t max_bytes) {
  std::string text;
  char buf[4096];
  while (size_t n = stream.read(reinterpret_cast<uint8_t*>(buf), sizeof(buf))) {
    text.append(buf, n);
    if (text.size() > max_bytes)
      throw StreamError("more than " + std::to_string(max_bytes) + " bytes");
  }
  return text;
}

}  // namespace ocl::data
