// Ranks that run the same build and config (see include/ocl/distributed/agreement.h).
#include "ocl/distributed/agreement.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

namespace ocl::distributed {
namespace {

// FNV-1a over bytes, 8 at a time: one digest for config texts and parameter bytes alike.
int64_t digest(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return static_cast<int64_t>(h);
}

int64_t digest(const std::string& text) { return digest(text.data(), text.size()); }

std::string ranks_list(const std::vector<int64_t>& ranks) {
  std::string text;
  for (const int64_t r : ranks) text += (text.empty() ? "" : ", ") + std::to_string(r);
  return (ranks.size() == 1 ? "rank " : "ranks ") + text;
}

}  // namespace

// Digests first (two numbers per rank); the texts travel only when they differ.
void require_same_build_and_config(Communicator& comm, const torch::Device& device,
                                   const std::string& build, const io::Config& config) {
  const int64_t world = comm.world_size();
  const std::string yaml = io::to_yaml(config);
  auto digests = torch::tensor({digest(build), digest(yaml)}, torch::kInt64);
  const auto all = comm.all_gather(digests.to(device), Group::kLoss, "build and config digests")
                       .view({world, 2})
                       .cpu();
  std::vector<int64_t> other_build, other_config;
  for (int64_t r = 1; r < world; ++r) {
    if (all[r][0].item<int64_t>() != all[0][0].item<int64_t>()) {
      other_build.push_back(r);
    } else if (all[r][1].item<int64_t>() != all[0][1].item<int64_t>()) {
      other_config.push_back(r);
    }
  }
  if (!other_build.empty()) {
    throw std::runtime_error(fmt::format(
        "ranks run different builds: the build of {} differs from rank 0's (rank {} runs {}); "
        "every rank must run the same ocl binary",
        ranks_list(other_build), comm.rank(), build));
  }
  if (other_config.empty()) return;
  // Rank 0's config to all; each finds its first differing key, and all learn every rank's.
  auto length = torch::tensor({static_cast<int64_t>(yaml.size())}, torch::kInt64).to(device);
  comm.broadcast_from_rank0({length}, "config length");
  auto bytes = torch::zeros({length.cpu().item<int64_t>()}, torch::kUInt8);
  if (comm.rank() == 0) std::memcpy(bytes.data_ptr(), yaml.data(), yaml.size());
  bytes = bytes.to(device);
  comm.broadcast_from_rank0({bytes}, "rank 0's config");
  bytes = bytes.cpu();
  const std::string rank0_yaml(static_cast<const char*>(bytes.data_ptr()),
                               static_cast<size_t>(bytes.numel()));
  const auto changes =
      io::config_changes(io::parse_config(rank0_yaml, {}, "rank 0's config"), config);
  const auto keys = io::config_keys();
  int64_t first = -1;
  if (!changes.empty())
    first = std::find(keys.begin(), keys.end(), changes.front().key) - keys.begin();
  const auto firsts = comm.all_gather(torch::tensor({first}, torch::kInt64).to(device),
                                      Group::kLoss, "first differing config keys")
                          .cpu();
  std::string where;
  for (const int64_t r : other_config) {
    const int64_t k = firsts[r].item<int64_t>();
    where += fmt::format("{}rank {} at {}", where.empty() ? "" : ", ", r,
                         k >= 0 && k < static_cast<int64_t>(keys.size()) ? keys[k] : "?");
  }
  throw std::runtime_error(fmt::format(
      "ranks run different configs: the config of {} differs from rank 0's ({}){}; every rank "
      "must run the same config",
      ranks_list(other_config), where,
      changes.empty() ? ""
                      : fmt::format("; here (rank {}) {} is {}, on rank 0 {}", comm.rank(),
                                    changes.front().key, changes.front().b, changes.front().a)));
}

void require_same_data(Communicator& comm, const torch::Device& device, const std::string& what,
                       int64_t size, int64_t classes) {
  const auto all = comm.all_gather(torch::tensor({size, classes}, torch::kInt64).to(device),
                                   Group::kLoss, "data set sizes")
                       .view({comm.world_size(), 2})
                       .cpu();
  std::vector<int64_t> differ;
  std::string views;
  for (int64_t r = 1; r < comm.world_size(); ++r) {
    if (all[r][0].item<int64_t>() == all[0][0].item<int64_t>() &&
        all[r][1].item<int64_t>() == all[0][1].item<int64_t>())
      continue;
    differ.push_back(r);
    views += fmt::format("; rank {}: {} images of {} classes", r, all[r][0].item<int64_t>(),
                         all[r][1].item<int64_t>());
  }
  if (differ.empty()) return;
  throw std::runtime_error(fmt::format(
      "ranks see different data: {} of {} differs from rank 0's (rank 0: {} images of {} "
      "classes{}); every rank must read the same copy of the data set",
      what, ranks_list(differ), all[0][0].item<int64_t>(), all[0][1].item<int64_t>(), views));
}

std::optional<std::pair<int64_t, int64_t>> first_replica_difference(
    Communicator& comm, const torch::Device& device, const std::vector<torch::Tensor>& tensors) {
  std::vector<int64_t> sums;
  for (const auto& t : tensors) {
    const auto bytes = t.detach().to(torch::kCPU).contiguous();
    sums.push_back(
        digest(bytes.data_ptr(), static_cast<size_t>(bytes.numel()) * bytes.element_size()));
  }
  const auto all = comm.all_gather(torch::tensor(sums, torch::kInt64).to(device), Group::kLoss,
                                   "parameter checksums")
                       .view({comm.world_size(), -1})
                       .cpu();
  for (int64_t r = 1; r < comm.world_size(); ++r) {
    for (int64_t k = 0; k < static_cast<int64_t>(sums.size()); ++k)
      if (all[r][k].item<int64_t>() != all[0][k].item<int64_t>()) return std::make_pair(r, k);
  }
  return std::nullopt;
}

}  // namespace ocl::distributed
