// c10d process groups behind Communicator, across LibTorch versions (backends derive from
// c10d::ProcessGroup on 1.13, c10d::Backend on 2.x; Gloo gets list all-gather and all-reduce +
// narrow for the flat collectives). NCCL code compiles where CMake proved nccl.h fits the LibTorch
// (OCL_WITH_C10D_NCCL), Gloo code where its headers are beside it (OCL_WITH_C10D_GLOO).
#include "ocl/distributed/communicator.h"

#include <netdb.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef OCL_WITH_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef OCL_WITH_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "ocl/compat.h"

namespace ocl::distributed {
namespace {

#if OCL_TORCH_AT_LEAST(2, 0)
using BackendBase = c10d::Backend;
#else
using BackendBase = c10d::ProcessGroup;
#endif

using Clock = std::chrono::steady_clock;

// Set by a process that calls the rendezvous off (abort_rendezvous); every waiting rank stops.
constexpr const char* kAbortKey = "ocl/abort";

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string text(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

std::string message(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
}

// A MASTER_ADDR that does not resolve would otherwise end in an unexplained socket timeout.
void require_resolvable(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    throw CollectiveError("MASTER_ADDR '" + host + "' does not resolve (" + ::gai_strerror(rc) +
                          "): set it to rank 0's host name or address");
  }
  ::freeaddrinfo(found);
}

c10::intrusive_ptr<c10d::TCPStore> connect_store(const LaunchInfo& l, bool server,
                                                 std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(l.master_port);
  o.isServer = server;
  o.numWorkers =
      server ? c10::optional<std::size_t>(static_cast<std::size_t>(l.world_size)) : c10::nullopt;
  o.waitWorkers = false;  // the process groups' own rendezvous waits, with our timeout
  o.timeout = timeout;
#if OCL_TORCH_AT_LEAST(2, 3)
  o.useLibUV = false;  // Debian's 2.6 is built without libuv and would throw
#endif
  return c10::make_intrusive<c10d::TCPStore>(l.master_addr, o);
}

// dist.backend resolved (auto: NCCL on a GPU, else Gloo), checked against the build and device.
std::string checked_backend(const LaunchInfo& launch, const CommunicatorOptions& options) {
  const std::string backend =
      options.backend == "auto" ? (options.device.is_cuda() ? "nccl" : "gloo") : options.backend;
  if (backend != "gloo" && backend != "nccl") {
    throw std::invalid_argument("dist.backend must be auto, nccl or gloo, got '" + backend + "'");
  }
  if (!backend_available(backend)) {
    throw std::invalid_argument(
        backend == "nccl"
            ? "dist.backend nccl is not available in this build (a CPU LibTorch, or configured "
              "with -DOCL_WITH_NCCL=OFF): use dist.backend=gloo"
            : "dist.backend gloo is not available in this build (its LibTorch came without "
              "Gloo's headers, as PyTorch's pip wheels do): use dist.backend=nccl on GPUs, or "
              "build against a LibTorch with Gloo's headers (Debian: libgloo-dev)");
  }
  if (backend == "nccl" && !options.device.is_cuda()) {
    throw std::invalid_argument("dist.backend nccl needs a CUDA device; train.device is " +
                                options.device.str());
  }
  if (launch.world_size < 1 || launch.rank < 0 || launch.rank >= launch.world_size) {
    throw std::invalid_argument("invalid launch: " + launch.describe());
  }
  return backend;
}

// NCCL's device, before any rendezvous, so that a rank without a GPU says so at once.
void prepare_nccl_device([[maybe_unused]] const CommunicatorOptions& options) {
#ifdef OCL_WITH_C10D_NCCL
  const auto visible = static_cast<int64_t>(c10::cuda::device_count());
  if (visible == 0) {
    throw std::invalid_argument(
        "dist.backend nccl needs a CUDA device, and this process sees no CUDA device (no GPU, "
        "no driver, or CUDA_VISIBLE_DEVICES empty): use dist.backend=gloo on CPUs");
  }
  if (options.device.index() >= visible) {
    throw std::invalid_argument("dist.backend nccl: device " + options.device.str() +
                                " does not exist, this process sees " + std::to_string(visible) +
                                " CUDA devices");
  }
  c10::cuda::set_device(options.device.index());
  // A failed or timed-out collective throws from wait() (reaching fail(): the collective, the
  // peers) instead of NCCL's watchdog ending the process first; a user's 0 keeps the watchdog.
  ::setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
#endif
}

}  // namespace

void abort_rendezvous(const LaunchInfo& launch, const std::string& reason) {
  try {
    auto store = connect_store(launch, /*server=*/false, std::chrono::seconds(3));
    store->set(kAbortKey, bytes(reason));
  } catch (const std::exception&) {
    // No rendezvous to call off (rank 0 is not there yet, or gone): nothing waits on it.
  }
}

bool backend_available(const std::string& backend) {
#ifdef OCL_WITH_C10D_GLOO
  if (backend == "gloo") return true;
#endif
#ifdef OCL_WITH_C10D_NCCL
  if (backend == "nccl") return true;
#endif
  return false;
}

// What each rank was last seen doing (a counter and the collective it last entered), written to
// "ocl/hb/<rank>" every heartbeat_s by a thread with its own store connection. Shared through a
// shared_ptr, not the Communicator: a store call to a node cut off the network can block for
// minutes, and its thread is then left behind at exit instead of being joined forever.
struct Heartbeat {
  std::mutex mutex;  // guards store (the thread and failure reports share the connection)
  c10::intrusive_ptr<c10d::Store> store;
  std::mutex state_mutex;  // guards what follows
  std::condition_variable changed;
  bool stop = false, exited = false;
  std::string current;  // "#seq what" of the collective last started
};

static void heartbeat_loop(const std::shared_ptr<Heartbeat>& hb, int64_t rank, double period_s) {
  int64_t count = 0;
  const auto period = std::chrono::duration<double>(period_s);
  std::unique_lock<std::mutex> state(hb->state_mutex);
  while (!hb->stop) {
    const std::string value =
        std::to_string(++count) + " " + (hb->current.empty() ? "#0 (none yet)" : hb->current);
    state.unlock();
    try {
      std::lock_guard<std::mutex> lock(hb->mutex);
      hb->store->set("ocl/hb/" + std::to_string(rank), bytes(value));
    } catch (...) {
      // The store's host (rank 0) has gone: failure reports say so; nothing to do here.
    }
    state.lock();
    hb->changed.wait_for(state, period, [&] { return hb->stop; });
  }
  hb->exited = true;
  hb->changed.notify_all();
}

// Every rank's heartbeat in the store now ("" for none), read on a thread of its own: nullopt when
// the store does not answer within `deadline` (the thread is left behind); throws if it refuses.
static std::optional<std::vector<std::string>> read_heartbeats(
    const std::shared_ptr<Heartbeat>& hb, int64_t world_size,
    std::chrono::duration<double> deadline) {
  std::packaged_task<std::vector<std::string>()> read([hb, world_size] {
    std::vector<std::string> values(static_cast<size_t>(world_size));
    std::lock_guard<std::mutex> lock(hb->mutex);
    for (int64_t r = 0; r < world_size; ++r) {
      const std::string key = "ocl/hb/" + std::to_string(r);
      values[static_cast<size_t>(r)] = hb->store->check({key}) ? text(hb->store->get(key)) : "";
    }
    return values;
  });
  auto values = read.get_future();
  std::thread(std::move(read)).detach();
  if (values.wait_for(deadline) != std::future_status::ready) return std::nullopt;
  return values.get();
}

struct PendingCollective::Impl {
  c10::intrusive_ptr<c10d::Work> work;
  Communicator::Impl* comm = nullptr;
  int64_t seq = 0;
  std::string what;
  Clock::time_point started;
};

struct Communicator::Impl {
  LaunchInfo launch;
  CommunicatorOptions options;
  std::string backend;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<BackendBase> grads, loss;
  std::atomic<int64_t> seq{0};
  std::atomic<int64_t> started_grads{0}, started_loss{0};
  std::shared_ptr<Heartbeat> heartbeat = std::make_shared<Heartbeat>();
  std::thread heartbeat_thread;
  std::atomic<bool> failed{false};  // a collective failed: the destructor aborts NCCL groups
  std::atomic<bool> stream_ordered{false};  // set_stream_ordered_waits (any thread: autograd's)

  BackendBase& group(Group g) { return g == Group::kGradients ? *grads : *loss; }

  // Stops the heartbeat thread: joined if it ends in 3 s, else left behind (stuck in the store).
  void stop_heartbeat() {
    if (!heartbeat_thread.joinable()) return;
    std::unique_lock<std::mutex> state(heartbeat->state_mutex);
    heartbeat->stop = true;
    heartbeat->changed.notify_all();
    const bool ended = heartbeat->changed.wait_for(state, std::chrono::seconds(3),
                                                   [&] { return heartbeat->exited; });
    state.unlock();
    if (ended)
      heartbeat_thread.join();
    else
      heartbeat_thread.detach();
  }

  // A failed rendezvous explained: a duplicated rank, rank 0's port taken, or what to check.
  std::string rendezvous_error(const std::string& cause, Clock::time_point started) const {
    std::ostringstream msg;
    if (cause.find("another process was started as rank") != std::string::npos ||
        cause.find("the rendezvous was called off") != std::string::npos) {
      msg << where() << ": " << cause;
    } else if (launch.rank == 0 && (cause.find("ddress already in use") != std::string::npos ||
                                    cause.find("EADDRINUSE") != std::string::npos)) {
      msg << where() << ": MASTER_PORT " << launch.master_port
          << " is already in use on this machine, so rank 0 cannot host the rendezvous store: "
             "another process started as rank 0 (a duplicated launch line), or an earlier run "
             "still alive, holds it ("
          << cause << ")";
    } else {
      msg << where() << ": rendezvous at " << launch.master_addr << ":" << launch.master_port
          << " (" << launch.source << ", " << backend << ") failed after "
          << static_cast<int64_t>(std::chrono::duration<double>(Clock::now() - started).count())
          << " s: " << cause << ". Check that all " << launch.world_size
          << " processes started, that they agree on MASTER_ADDR:MASTER_PORT, and that rank 0's "
             "host accepts connections on that port";
    }
    return msg.str();
  }

  std::string where() const {
    return "rank " + std::to_string(launch.rank) + " of " + std::to_string(launch.world_size);
  }

  // Every rank's claim, polled before the groups form (their rendezvous cannot be interrupted): a
  // process that finds the run cannot start stops the others through kAbortKey at once, and a
  // timeout names the ranks that never came.
  void wait_for_claims(Clock::time_point started) {
    std::vector<std::string> keys;
    for (int64_t r = 0; r < launch.world_size; ++r)
      keys.push_back("ocl/rank_claims/" + std::to_string(r));
    while (true) {
      if (store->check({kAbortKey})) {
        throw std::runtime_error("the rendezvous was called off: " + text(store->get(kAbortKey)));
      }
      if (store->check(keys)) return;
      if (Clock::now() - started > options.timeout) {
        std::string missing;
        for (int64_t r = 0; r < launch.world_size; ++r) {
          if (!store->check({keys[static_cast<size_t>(r)]}))
            missing += (missing.empty() ? "" : ", ") + std::to_string(r);
        }
        throw std::runtime_error("rank(s) " + missing + " never joined within dist.timeout_s (" +
                                 std::to_string(options.timeout.count() / 1000) + " s)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // Every other rank's heartbeat read twice, a few periods apart: a counter that did not move is
  // a dead or stopped rank; a live one's last collective says whether it is behind.
  std::string peer_report() {
    if (!heartbeat->store) return "";
    const auto pause = std::chrono::duration<double>(std::max(3 * options.heartbeat_s, 1.0));
    // A live store answers in milliseconds, one behind a cut link never (TCP retries for minutes).
    const auto deadline = std::chrono::duration<double>(3.0);
    const std::string store_at = launch.master_addr + ":" + std::to_string(launch.master_port);
    std::optional<std::vector<std::string>> first, second;
    try {
      first = read_heartbeats(heartbeat, launch.world_size, deadline);
      if (first) {
        std::this_thread::sleep_for(pause);
        second = read_heartbeats(heartbeat, launch.world_size, deadline);
      }
    } catch (const std::exception&) {
      return "rank 0 hosts the rendezvous store at " + store_at +
             " and it cannot be reached: rank 0 has probably died";
    }
    if (!first || !second) {
      return "the rendezvous store at " + store_at + " (rank 0's node) cannot be reached: no " +
             "answer within " + std::to_string(static_cast<int>(deadline.count())) +
             " s; the network to that node is cut, or the node is gone";
    }
    std::ostringstream report;
    bool any = false;
    for (int64_t r = 0; r < launch.world_size; ++r) {
      if (r == launch.rank) continue;
      const auto space = (*second)[r].find(' ');
      const std::string last = space == std::string::npos ? "?" : (*second)[r].substr(space + 1);
      if (any) report << "; ";
      any = true;
      if ((*second)[r].empty()) {
        report << "rank " << r << " never sent a heartbeat";
      } else if ((*first)[r] == (*second)[r] ||
                 (*first)[r].substr(0, (*first)[r].find(' ')) == (*second)[r].substr(0, space)) {
        report << "rank " << r << " has stopped (no heartbeat for "
               << static_cast<int>(pause.count()) << " s; the last collective it reported: " << last
               << ")";
      } else {
        report << "rank " << r << " is alive, last collective entered: " << last;
      }
    }
    return report.str();
  }

  [[noreturn]] void fail(int64_t n, const std::string& what, Clock::time_point started,
                         const std::string& cause) {
    failed = true;
    const double after = std::chrono::duration<double>(Clock::now() - started).count();
    std::ostringstream msg;
    msg << where() << ": collective #" << n << " (" << what << ", " << backend << ") failed after "
        << static_cast<int64_t>(after * 10) / 10.0 << " s: " << cause;
    const std::string peers = peer_report();
    if (!peers.empty()) msg << ". Peers: " << peers;
    throw CollectiveError(msg.str());
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, int64_t n, const std::string& what,
            Clock::time_point started) {
    try {
#if OCL_TORCH_AT_LEAST(2, 6)
      // From 2.6 an NCCL work's synchronize() only orders the current stream after it (its
      // wait() polls its event on the host under TORCH_NCCL_BLOCKING_WAIT, which a capture
      // forbids).
      if (stream_ordered && backend == "nccl") {
        work->synchronize();
        return;
      }
#endif
      work->wait();
    } catch (const std::exception& e) {
      fail(n, what, started, message(e));
    }
  }

  // Starts collective `what` on group `g` (`launch(group)` returns its work), numbered and named.
  template <typename Launch>
  PendingCollective start(Group g, const std::string& what, Launch launch) {
    const auto started = Clock::now();
    const int64_t n = ++seq;
    (g == Group::kGradients ? started_grads : started_loss)++;
    {
      std::lock_guard<std::mutex> lock(heartbeat->state_mutex);
      heartbeat->current = "#" + std::to_string(n) + " " + what;
    }
    PendingCollective pending;
    try {
      pending.impl_ = std::make_shared<PendingCollective::Impl>(
          PendingCollective::Impl{launch(group(g)), this, n, what, started});
    } catch (const c10::Error& e) {
      fail(n, what, started, e.what_without_backtrace());
    }
    return pending;
  }

  c10::intrusive_ptr<BackendBase> make_group(const std::string& prefix) {
    auto store_view = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    [[maybe_unused]] const int rank = static_cast<int>(launch.rank),
                               size = static_cast<int>(launch.world_size);
#ifdef OCL_WITH_C10D_GLOO
    if (backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      // GLOO_SOCKET_IFNAME (PyTorch's variable), else the host name's; loopback on one node.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != '\0') {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (const auto& a = launch.master_addr;
                 a == "localhost" || a.rfind("127.", 0) == 0 || a == "::1") {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      return c10::make_intrusive<c10d::ProcessGroupGloo>(store_view, rank, size, o);
    }
#endif
#ifdef OCL_WITH_C10D_NCCL
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = options.timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_view, rank, size, o);
#if OCL_TORCH_AT_LEAST(2, 6)
    // Bound to this rank's device (init_process_group(device_id=...)): set-up and collectives
    // without a tensor use it instead of guessing from the rank (barrier() passes it anyway).
    group->setBoundDeviceId(options.device);
#endif
    return group;
#else
    throw std::invalid_argument("this build of ocl has no NCCL backend");
#endif
  }
};

void PendingCollective::wait() {
  if (!impl_) return;
  auto impl = std::move(impl_);
  impl->comm->wait(impl->work, impl->seq, impl->what, impl->started);
}

Communicator::Communicator(const LaunchInfo& launch, CommunicatorOptions options)
    : impl_(std::make_unique<Impl>()) {
  auto& d = *impl_;
  d.launch = launch;
  d.options = options;
  d.backend = checked_backend(launch, options);
  if (d.backend == "nccl") prepare_nccl_device(options);
  require_resolvable(launch.master_addr);
  const auto started = Clock::now();
  try {
    d.store = connect_store(launch, launch.rank == 0, options.timeout);
    // Each rank claims its number before any group forms: a duplicate RANK learns it here and
    // stops, and the others form their groups without it.
    if (d.store->add("ocl/rank_claims/" + std::to_string(launch.rank), 1) > 1) {
      throw std::runtime_error(
          "another process was started as rank " + std::to_string(launch.rank) + " of " +
          std::to_string(launch.world_size) +
          " and claimed it first: each process needs its own RANK (a duplicated launch line, or "
          "a requeued job overlapping its predecessor)");
    }
    d.wait_for_claims(started);
    d.grads = d.make_group("ocl/grads/");
    d.loss = d.make_group("ocl/loss/");
    if (options.heartbeat_s > 0) {
      d.heartbeat->store = connect_store(launch, /*server=*/false, std::chrono::seconds(5));
      d.heartbeat->store->setTimeout(std::chrono::seconds(5));
      d.heartbeat_thread =
          std::thread(heartbeat_loop, d.heartbeat, launch.rank, options.heartbeat_s);
    }
  } catch (const std::exception& e) {
    // The heartbeat thread, if it started, must stop before impl_ goes.
    d.stop_heartbeat();
    throw CollectiveError(d.rendezvous_error(message(e), started));
  }
}

Communicator::~Communicator() {
  impl_->stop_heartbeat();
#if defined(OCL_WITH_C10D_NCCL) && OCL_TORCH_AT_LEAST(2, 3)
  // NCCL communicators are torn down explicitly (at exit they leak and warn), and aborted after a
  // failed collective: from 2.6 a shutdown would wait for work a lost peer never lets finish.
  for (auto* group : {impl_->grads.get(), impl_->loss.get()}) {
    auto* nccl = dynamic_cast<c10d::ProcessGroupNCCL*>(group);
    if (nccl == nullptr) continue;
    try {
      if (impl_->failed)
        nccl->abort();
      else
        nccl->shutdown();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: tearing down an NCCL group: %s\n", impl_->where().c_str(),
                   e.what());
    }
  }
#endif
}

int64_t Communicator::rank() const { return impl_->launch.rank; }
int64_t Communicator::world_size() const { return impl_->launch.world_size; }
const std::string& Communicator::backend() const { return impl_->backend; }

int64_t Communicator::collectives_started(Group group) const {
  return group == Group::kGradients ? impl_->started_grads.load() : impl_->started_loss.load();
}

bool Communicator::set_stream_ordered_waits(bool on) { return impl_->stream_ordered.exchange(on); }

void Communicator::await_device(const compat::StreamMark& mark, const std::string& what) {
  const auto started = Clock::now();
  while (!mark.reached()) {
    if (Clock::now() - started > impl_->options.timeout) {
      impl_->fail(impl_->seq.load(), what, started,
                  "the device did not get past it within dist.timeout_s (" +
                      std::to_string(impl_->options.timeout.count() / 1000) +
                      " s): a collective it waits on never finished");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

PendingCollective Communicator::all_reduce_sum_async(torch::Tensor tensor, Group group,
                                                     const std::string& what) {
  return impl_->start(group, "all-reduce of " + what, [&](BackendBase& g) {
    std::vector<torch::Tensor> tensors{std::move(tensor)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return g.allreduce(tensors, o);
  });
}

void Communicator::all_reduce_sum(torch::Tensor tensor, Group group, const std::string& what) {
  all_reduce_sum_async(std::move(tensor), group, what).wait();
}

torch::Tensor Communicator::all_gather(const torch::Tensor& tensor, Group group,
                                       const std::string& what) {
  auto& d = *impl_;
  const std::string name = "all-gather of " + what;
  auto input = tensor.contiguous();
#if OCL_TORCH_AT_LEAST(2, 0)
  if (d.backend == "nccl") {
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] *= d.launch.world_size;
    auto output = torch::empty(shape, input.options());
    d.start(group, name, [&](BackendBase& g) { return g._allgather_base(output, input); }).wait();
    return output;
  }
#endif
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int64_t r = 0; r < d.launch.world_size; ++r) outputs[0].push_back(torch::empty_like(input));
  std::vector<torch::Tensor> inputs{input};
  d.start(group, name, [&](BackendBase& g) { return g.allgather(outputs, inputs); }).wait();
  return torch::cat(outputs[0], 0);
}

torch::Tensor Communicator::reduce_scatter_sum(const torch::Tensor& tensor, Group group,
                                               const std::string& what) {
  auto& d = *impl_;
  const int64_t world = d.launch.world_size;
  TORCH_CHECK(tensor.dim() >= 1 && tensor.size(0) % world == 0, "reduce_scatter_sum: dim 0 (",
              tensor.size(0), ") must be a multiple of the world size ", world);
  const int64_t rows = tensor.size(0) / world;
  const std::string name = "reduce-scatter of " + what;
#if OCL_TORCH_AT_LEAST(2, 0)
  if (d.backend == "nccl") {
    auto input = tensor.contiguous();
    auto output = torch::empty_like(input.narrow(0, 0, rows));
    d.start(group, name, [&](BackendBase& g) {
       return g._reduce_scatter_base(output, input);
     }).wait();
    return output;
  }
#endif
  std::vector<torch::Tensor> tensors{tensor.clone(at::MemoryFormat::Contiguous)};
  d.start(group, name, [&](BackendBase& g) { return g.allreduce(tensors); }).wait();
  return tensors[0].narrow(0, d.launch.rank * rows, rows);
}

void Communicator::broadcast_from_rank0(const std::vector<torch::Tensor>& tensors,
                                        const std::string& what) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    // Broadcast works in place on a contiguous tensor: a non-contiguous one goes through a copy.
    auto t = tensors[i].is_contiguous() ? tensors[i] : tensors[i].contiguous();
    std::vector<torch::Tensor> list{t};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    const std::string name = "broadcast of " + what + " [" + std::to_string(i) + "]";
    impl_->start(Group::kGradients, name, [&](BackendBase& g) { return g.broadcast(list, o); })
        .wait();
    if (!tensors[i].is_same(t)) {
      torch::NoGradGuard no_grad;
      tensors[i].copy_(t);
    }
  }
}

void Communicator::barrier(const std::string& what) {
  c10d::BarrierOptions o;
  // NCCL's barrier is an all-reduce on a device: this rank's own, not one guessed from the rank.
  if (impl_->backend == "nccl") o.device_ids = {impl_->options.device.index()};
  impl_->start(Group::kLoss, "barrier: " + what, [&](BackendBase& g) { return g.barrier(o); })
      .wait();
}

}  // namespace ocl::distributed
