// Builds the data set and transform a run's config names (DataConfig), for the train and the
// held-out split.
#pragma once

#include <memory>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"
#include "ocl/io/config.h"

namespace ocl::data {

/// synthetic: SyntheticDataset(synthetic_*_size, synthetic_classes, image_size, seed, train);
/// imagefolder: ImageFolderDataset(path/train or path/val); packed: PackedDataset(path/train or
/// path/val, as ocl_pack writes them); cifar10/cifar100: CifarDataset.
/// Throws std::runtime_error naming data.path when the files are missing.
std::shared_ptr<const Dataset> make_dataset(const io::DataConfig& config, int image_size,
                                            bool train, uint64_t seed);

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
