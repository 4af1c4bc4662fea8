#include "io/torch_checkpoint.h"

#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/text_file.h"

namespace cq {

namespace {

struct StorageDType {
  const char* storage;
  const char* torch_name;
  std::optional<DType> dtype;  // std::nullopt: known, but not a dtype cq reads
};

constexpr size_t kStorageTypeCount = 10;
const StorageDType kStorageDTypes[kStorageTypeCount] = {
    {"FloatStorage", "float32", DType::F32},   {"HalfStorage", "float16", DType::F16},
    {"BFloat16Storage", "bfloat16", DType::BF16}, {"IntStorage", "int32", DType::I32},
    {"CharStorage", "int8", DType::I8},        {"ByteStorage", "uint8", DType::U8},
    {"DoubleStorage", "float64", std::nullopt}, {"LongStorage", "int64", std::nullopt},
    {"ShortStorage", "int16", std::nullopt},   {"BoolStorage", "bool", std::nullopt}};

DType storage_dtype(const std::string& storage, const std::string& where, const std::string& name) {
  for (const auto& known : kStorageDTypes)
    if (storage == known.storage) {
      if (!known.dtype)
        fail("{}: tensor '{}' is {} ({}); supported dtypes are float32, float16, bfloat16, int32, int8 and uint8", where,
             name, known.torch_name, storage);
      return *known.dtype;
    }
  fail("{}: tensor '{}' has unknown storage type '{}'", where, name, storage);
}

// a * b + c within int64, or an error.
int64_t checked_extent(int64_t a, int64_t b, int64_t c, const std::string& where, const std::string& name) {
  if (a != 0 && b > (std::numeric_limits<int64_t>::max() - c) / a) fail("{}: tensor '{}': shape and strides overflow", where, name);
  return a * b + c;
}

}  // namespace

TorchArchive::TorchArchive(const std::filesystem::path& file) : file_(std::make_unique<MappedFile>(file)) {
  const std::string where = file.string();
  const std::span<const std::byte> bytes(file_->data(), file_->size());
  if (!looks_like_zip(bytes)) {
    if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x80)
      fail("{}: legacy torch.save format (PyTorch < 1.6, not a zip archive) is not supported; re-save it with a current "
           "PyTorch (torch.save(torch.load(f), f)) or convert it to safetensors",
           where);
    fail("{}: not a PyTorch checkpoint (torch.save writes a zip archive)", where);
  }
  zip_ = std::make_unique<ZipArchive>(bytes, where);
  const ZipEntry* pickle_entry = nullptr;
  for (const auto& entry : zip_->entries()) {
    const auto slash = entry.name.find('/');
    if (slash == std::string::npos || entry.name.substr(slash) != "/data.pkl") continue;
    if (pickle_entry) fail("{}: archive holds two pickles ('{}' and '{}')", where, pickle_entry->name, entry.name);
    pickle_entry = &entry;
    prefix_ = entry.name.substr(0, slash);
  }
  if (!pickle_entry) fail("{}: zip archive without <name>/data.pkl; not written by torch.save", where);
  if (const ZipEntry* order = zip_->find(prefix_ + "/byteorder")) {
    const auto text = zip_->data(*order);
    if (std::string(reinterpret_cast<const char*>(text.data()), text.size()) != "little")
      fail("{}: big-endian checkpoint (byteorder '{}'); only little-endian is supported", where,
           std::string(reinterpret_cast<const char*>(text.data()), std::min<size_t>(text.size(), 16)));
  }
  pickle_ = std::make_unique<PickleReader>(zip_->data(*pickle_entry), where);
}

TensorInfo TorchArchive::tensor(size_t index, const std::string& name, std::vector<std::vector<std::byte>>& copies) const {
  const std::string where = path().string();
  const PickleValue& value = pickle_->value(index);
  if (value.kind != PickleKind::Tensor)
    fail("{}: '{}' is {}, not a tensor (a training checkpoint? save model.state_dict())", where, name,
         PickleReader::kind_name(value.kind));
  const PickledTensor& view = value.tensor;
  const PickledStorage& storage = pickle_->value(view.storage).storage;
  TensorInfo info;
  info.name = name;
  info.file = path();
  info.dtype = storage_dtype(storage.type, where, name);
  const auto element = static_cast<int64_t>(dtype_size(info.dtype));
  const std::string entry_name = prefix_ + "/data/" + storage.key;
  const ZipEntry* entry = zip_->find(entry_name);
  if (!entry) fail("{}: tensor '{}': storage '{}' is missing from the archive", where, name, entry_name);
  const std::span<const std::byte> data = zip_->data(*entry);
  if (storage.numel > std::numeric_limits<int64_t>::max() / element ||
      data.size() != static_cast<uint64_t>(storage.numel * element))
    fail("{}: tensor '{}': storage '{}' has {} bytes, the pickle says {} elements of {} bytes", where, name, entry_name,
         data.size(), storage.numel, element);
  // The view's extent: the last element it reaches must lie inside the storage.
  if (view.offset < 0) fail("{}: tensor '{}': negative storage offset {}", where, name, view.offset);
  int64_t numel = 1;
  int64_t last = view.offset;
  for (size_t d = 0; d < view.size.size(); ++d) {
    if (view.size[d] < 0 || view.stride[d] < 0)
      fail("{}: tensor '{}': negative size or stride in dimension {}", where, name, d);
    numel = checked_extent(numel, view.size[d], 0, where, name);
    info.shape.push_back(view.size[d]);
  }
  if (numel > 0) {
    for (size_t d = 0; d < view.size.size(); ++d) last = checked_extent(view.size[d] - 1, view.stride[d], last, where, name);
    if (last >= storage.numel)
      fail("{}: tensor '{}': shape {} at offset {} reaches element {} of storage '{}', which has {}", where, name,
           nlohmann::json(info.shape).dump(), view.offset, last, storage.key, storage.numel);
  }
  info.bytes = static_cast<size_t>(numel * element);
  bool contiguous = true;
  int64_t expected = 1;
  for (size_t d = view.size.size(); d-- > 0;) {
    if (view.size[d] != 1 && view.stride[d] != expected) contiguous = false;
    expected *= view.size[d];
  }
  if (contiguous || numel == 0) {
    info.data = data.data() + (numel == 0 ? 0 : view.offset * element);
    return info;
  }
  // A strided view: gathered element by element into a row-major copy.
  std::vector<std::byte>& copy = copies.emplace_back(info.bytes);
  std::vector<int64_t> position(view.size.size(), 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t source = view.offset;
    for (size_t d = 0; d < view.size.size(); ++d) source += position[d] * view.stride[d];
    std::memcpy(copy.data() + i * element, data.data() + source * element, static_cast<size_t>(element));
    for (size_t d = view.size.size(); d-- > 0;) {
      if (++position[d] < view.size[d]) break;
      position[d] = 0;
    }
  }
  info.data = copy.data();
  return info;
}

namespace {

void add_state_dict(const std::filesystem::path& file, LoadedTensors& loaded) {
  TorchArchive archive(file);
  const std::string where = file.string();
  const PickleValue& root = archive.pickle().value(archive.pickle().root());
  if (root.kind != PickleKind::Dict) fail("{}: the pickle holds {}, not a state dict", where, PickleReader::kind_name(root.kind));
  for (size_t i = 0; i < root.items.size(); i += 2) {
    const PickleValue& key = archive.pickle().value(root.items[i]);
    if (key.kind != PickleKind::String) fail("{}: state dict key is {}, not a string", where, PickleReader::kind_name(key.kind));
    TensorInfo info = archive.tensor(root.items[i + 1], key.text, loaded.copies);
    if (loaded.tensors.count(key.text)) fail("{}: tensor '{}' appears in more than one file", where, key.text);
    loaded.tensors.emplace(key.text, std::move(info));
  }
  loaded.files.push_back(archive.release_mapping());
}

}  // namespace

LoadedTensors read_torch_state_dict(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  if (fs::is_directory(path)) {
    const auto found = torch_checkpoint_of(path);
    if (!found) fail("{}: no pytorch_model.bin or pytorch_model.bin.index.json", path.string());
    file = *found;
  }
  LoadedTensors loaded;
  loaded.source = path;
  if (file.extension() != ".json") {
    add_state_dict(file, loaded);
    return loaded;
  }
  const nlohmann::json index = read_json_file(file);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: no \"weight_map\" object", file.string());
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) fail("{}: weight_map entry '{}' is not a file name", file.string(), name);
    const std::string shard_name = shard.get<std::string>();
    if (shard_name.find('/') != std::string::npos || shard_name == "..")
      fail("{}: weight_map entry '{}' names '{}' outside the directory", file.string(), name, shard_name);
    names_by_shard[shard_name].push_back(name);
  }
  for (const auto& [shard, names] : names_by_shard) {
    add_state_dict(file.parent_path() / shard, loaded);
    for (const auto& name : names)
      if (!loaded.tensors.count(name))
        fail("{}: index lists tensor '{}' in '{}', which does not contain it", file.string(), name, shard);
  }
  return loaded;
}

std::optional<std::filesystem::path> torch_checkpoint_of(const std::filesystem::path& model_dir) {
  namespace fs = std::filesystem;
  if (fs::exists(model_dir / "model.safetensors") || fs::exists(model_dir / "model.safetensors.index.json")) return std::nullopt;
  if (fs::exists(model_dir / "pytorch_model.bin.index.json")) return model_dir / "pytorch_model.bin.index.json";
  if (fs::exists(model_dir / "pytorch_model.bin")) return model_dir / "pytorch_model.bin";
  return std::nullopt;
}

}  // namespace cq
