// ocl_pack: converts a data set into packed shards (include/ocl/data/packed.h, memory-mapped by
// `data.dataset: packed`) or, with --format webdataset, WebDataset tar shards (data/tar_writer.h);
// usage in docs/pretraining.md.
//
//   ocl_pack --source /data/imagenet --output /data/imagenet-pack             (train/ and val/)
#include <cstdio>

#include "app_common.h"
#include <CLI/CLI.hpp>

#include <ocl/data/pack_job.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_pack: packs a data set into memory-mappable shards (data.dataset: packed)"};
  ocl::data::PackJobOptions s;
  app.add_option("--source", s.source,
                 "the data set: an ImageFolder root (train/, val/) or a CIFAR folder")
      ->required();
  app.add_option("--output", s.output, "the pack folder (one sub-folder per split)")->required();
  app.add_option("--from", s.from, "the source's layout")
      ->check(CLI::IsMember({"imagefolder", "cifar10", "cifar100"}));
  app.add_option("--split", s.splits, "splits to pack (repeatable; default train and val)");
  app.add_option("--short-side", s.short_side,
                 "shrink so the shorter side is at most this (0: keep the size)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--encoding", s.encoding, "jpeg or raw (uint8 RGB)")
      ->check(CLI::IsMember({"jpeg", "raw"}));
  app.add_option("--quality", s.quality, "JPEG quality")->check(CLI::Range(1, 100));
  app.add_option("--shard-mb", s.shard_mb, "largest shard in MiB")->check(ocl::apps::at_least(1));
  app.add_option("--threads", s.threads, "decoding threads (0: one per core)")
      ->check(ocl::apps::at_least(0));
  app.add_flag("--resume", s.resume, "continue an interrupted pack");
  app.add_option("--stop-after-images", s.stop_after,
                 "stop as if interrupted after about this many images (testing)")
      ->check(ocl::apps::at_least(0));
  app.add_flag("--overwrite", s.overwrite, "replace an existing pack");
  app.add_option("--format", s.format, "packed (data.dataset: packed) or webdataset (tar shards)")
      ->check(CLI::IsMember({"packed", "webdataset"}));
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;
  if (s.resume && s.overwrite) {
    std::fprintf(stderr, "ocl_pack: --resume and --overwrite exclude each other\n");
    return 2;
  }
  if (s.format == "webdataset" && (s.resume || s.encoding == "raw")) {
    std::fprintf(stderr, "ocl_pack: --format webdataset writes JPEG shards whole: %s\n",
                 s.resume ? "--resume is the packed format's (rerun with --overwrite)"
                          : "--encoding raw is the packed format's");
    return 2;
  }
  return ocl::apps::run_reporting_errors("ocl_pack", [&] {
    ocl::data::run_pack_job(s, ocl::apps::install_stop_handlers("ocl_pack"));
    return 0;
  });
}
