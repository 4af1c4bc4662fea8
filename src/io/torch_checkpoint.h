#pragma once
// PyTorch checkpoints as torch.save writes them (the zip format of PyTorch >= 1.6): a zip
// archive holding <name>/data.pkl (the pickled object, read by the restricted PickleReader,
// nothing executed) and one uncompressed entry <name>/data/<key> per storage, which is
// mapped, never copied. Tensors are views of storages (offset, size, stride): contiguous
// ones point into the mapping, others (rare in state dicts) are gathered into a copy; tied
// weights are two names for the same bytes. The pre-1.6 (legacy, non-zip) format is refused
// with a message saying how to convert it.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/pickle_reader.h"
#include "io/safetensors.h"
#include "io/zip_archive.h"

namespace cq {

// One torch.save file, mapped, its pickle read.
class TorchArchive {
 public:
  explicit TorchArchive(const std::filesystem::path& file);
  const PickleReader& pickle() const { return *pickle_; }
  const std::filesystem::path& path() const { return file_->path(); }
  // Tensor value `index` of the pickle as a TensorInfo named `name`: its storage checked
  // (dtype supported, entry size, the view's extent inside it); a non-contiguous view is
  // gathered into a new element of `copies`.
  TensorInfo tensor(size_t index, const std::string& name, std::vector<std::vector<std::byte>>& copies) const;
  // Gives up the mapping (for a LoadedTensors that keeps tensors pointing into it).
  std::unique_ptr<MappedFile> release_mapping() { return std::move(file_); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::unique_ptr<ZipArchive> zip_;
  std::unique_ptr<PickleReader> pickle_;
  std::string prefix_;  // the archive's top folder
};

// Reads a state dict: `path` is pytorch_model.bin, a shard index
// (pytorch_model.bin.index.json, every shard it names), or a directory holding either.
// The pickle must be a dict of name -> tensor; a name in two shards is an error.
LoadedTensors read_torch_state_dict(const std::filesystem::path& path);

// The PyTorch checkpoint of a model directory that has no safetensors one (safetensors is
// preferred when both exist): its index or pytorch_model.bin; std::nullopt otherwise.
std::optional<std::filesystem::path> torch_checkpoint_of(const std::filesystem::path& model_dir);

}  // namespace cq
