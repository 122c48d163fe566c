// Builds the data set and transform a run's config names (DataConfig), for the train and the
// held-out split.
#pragma once

#include <memory>

#include "ocl/data/dataset.h"
#include "ocl/data/loader.h"
#include "ocl/data/streaming.h"
#include "ocl/data/transforms.h"
#include "ocl/io/config.h"

namespace ocl::data {

/// synthetic: SyntheticDataset(synthetic_*_size, synthetic_classes, image_size, seed, train);
/// imagefolder: ImageFolderDataset(path/train or path/val); packed: PackedDataset(path/train or
/// path/val, as ocl_pack writes them); cifar10/cifar100: CifarDataset.
/// webdataset shards named by http(s) URLs or pipe: commands are read through a shard cache,
/// data.cache_dir/ocl-streamed-shards (evaluation reads its samples at random): each streamed
/// once, in order, into a copy there unless an earlier run's copy is there, up to `max_samples`
/// samples' shards (0: all). Throws std::runtime_error naming data.path when the files are
/// missing.
std::shared_ptr<const Dataset> make_dataset(const io::DataConfig& config, int image_size,
                                            bool train, uint64_t seed, int64_t max_samples = 0);

/// Whether training reads data.path as streams (data/streaming.h): data.dataset webdataset with
/// data.read stream, or shards named by http(s) URLs or pipe: commands.
bool is_streamed(const io::DataConfig& config);

/// The streamed training set's loader over data.path's shards, `options` as for a Loader; the
/// epoch's length from data.samples_per_epoch, else from the shards' sizes.json (`source` says
/// which, for the log). Throws naming the keys when neither gives it.
std::unique_ptr<StreamingLoader> make_streaming_loader(const io::DataConfig& config,
                                                       std::shared_ptr<const Transform> transform,
                                                       const LoaderOptions& options,
                                                       std::string* source);

/// Throws naming the classes only one split has when the training and validation splits' class
/// lists differ: a class missing from one (an unreadable folder) shifts every label after it,
/// and every figure computed on them would be wrong without a word.
void require_same_classes(const Dataset& train, const Dataset& val);

/// train: RandomResizedCrop + flip per the config (augment rrc_flip), or Resize + CenterCrop
/// (augment none, and always for the held-out split).
std::shared_ptr<const Transform> make_transform(const io::DataConfig& config, int image_size,
                                                bool train);

/// Pre-training's transform: make_transform's training crop, then data.illumination's gradient
/// and data.photometric's colour augmentation (photometric.h) for `views` copies: 1
/// (mask.group_views shared) or 2 (independent: the same crop twice, drawn apart). With neither
/// augmentation the crop alone, one view: two copies would be the same pixels.
std::shared_ptr<const Transform> make_pretrain_transform(const io::DataConfig& config,
                                                         int image_size, int views);

}  // namespace ocl::data
