#include "io/torch_writer.h"

#include <array>
#include <cstring>

#include "util/error.h"

namespace cq {

namespace {

uint32_t crc32(const std::string& data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : data) c = table[(c ^ static_cast<uint8_t>(ch)) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put16(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
}
void put32(std::string& out, uint32_t v) {
  put16(out, v & 0xFFFF);
  put16(out, v >> 16);
}

// Stored (uncompressed) zip entries, each entry's data aligned to 64 bytes as torch.save does.
class ZipWriter {
 public:
  void add(const std::string& name, const std::string& data) {
    if (entries_ == 0xFFFF) fail("torch writer: more than 65535 entries (ZIP64 is not written)");
    if (data.size() > 0xFFFFFFF0u || bytes_.size() > 0xFFFFFFF0u - data.size() - 4096)
      fail("torch writer: the file would exceed 4 GiB (ZIP64 is not written)");
    const auto offset = static_cast<uint32_t>(bytes_.size());
    size_t padding = (64 - (bytes_.size() + 30 + name.size()) % 64) % 64;
    if (padding > 0 && padding < 4) padding += 64;  // an extra field needs its 4-byte header
    const uint32_t crc = crc32(data);
    const auto size = static_cast<uint32_t>(data.size());
    put32(bytes_, 0x04034b50u);
    put16(bytes_, 20), put16(bytes_, 0), put16(bytes_, 0), put16(bytes_, 0), put16(bytes_, 0x21);
    put32(bytes_, crc), put32(bytes_, size), put32(bytes_, size);
    put16(bytes_, static_cast<uint32_t>(name.size())), put16(bytes_, static_cast<uint32_t>(padding));
    bytes_ += name;
    if (padding > 0) {
      put16(bytes_, 0x4246);  // a private extra-field id, as torch's padding uses
      put16(bytes_, static_cast<uint32_t>(padding - 4));
      bytes_.append(padding - 4, '\0');
    }
    bytes_ += data;
    put32(central_, 0x02014b50u);
    put16(central_, 20), put16(central_, 20), put16(central_, 0), put16(central_, 0), put16(central_, 0);
    put16(central_, 0x21);
    put32(central_, crc), put32(central_, size), put32(central_, size);
    put16(central_, static_cast<uint32_t>(name.size())), put16(central_, 0), put16(central_, 0);
    put16(central_, 0), put16(central_, 0), put32(central_, 0), put32(central_, offset);
    central_ += name;
    ++entries_;
  }
  std::string finish() {
    const auto central_offset = static_cast<uint32_t>(bytes_.size());
    bytes_ += central_;
    put32(bytes_, 0x06054b50u);
    put16(bytes_, 0), put16(bytes_, 0), put16(bytes_, entries_), put16(bytes_, entries_);
    put32(bytes_, static_cast<uint32_t>(central_.size())), put32(bytes_, central_offset), put16(bytes_, 0);
    return std::move(bytes_);
  }

 private:
  std::string bytes_, central_;
  uint32_t entries_ = 0;
};

// Pickle protocol 2, the opcodes this file needs.
class Pickler {
 public:
  Pickler() { out_ += "\x80\x02"; }
  void global(const char* module, const char* name) { out_ += std::string("c") + module + "\n" + name + "\n"; }
  void mark() { out_ += '('; }
  void tuple() { out_ += 't'; }
  void empty_tuple() { out_ += ')'; }
  void empty_dict() { out_ += '}'; }
  void set_items() { out_ += 'u'; }
  void reduce() { out_ += 'R'; }
  void persistent_id() { out_ += 'Q'; }
  void false_value() { out_ += '\x89'; }
  void integer(int64_t v) {
    if (v < INT32_MIN || v > INT32_MAX) fail("torch writer: integer {} does not fit the pickle's BININT", v);
    out_ += 'J';
    put32(out_, static_cast<uint32_t>(static_cast<int32_t>(v)));
  }
  void text(const std::string& s) {
    out_ += 'X';
    put32(out_, static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  std::string finish() {
    out_ += '.';
    return std::move(out_);
  }

 private:
  std::string out_;
};

}  // namespace

std::string torch_save_layer_dicts(const std::vector<TorchNamedTensors>& layers, const std::string& archive) {
  Pickler pickle;
  std::vector<std::string> storages;
  pickle.empty_dict();
  pickle.mark();
  for (size_t layer = 0; layer < layers.size(); ++layer) {
    pickle.integer(static_cast<int64_t>(layer));
    pickle.global("collections", "OrderedDict");
    pickle.empty_tuple();
    pickle.reduce();
    pickle.mark();
    for (const auto& [name, tensor] : layers[layer]) {
      int64_t numel = 1;
      for (int64_t d : tensor.shape) numel *= d;
      if (numel != static_cast<int64_t>(tensor.values.size()))
        fail("torch writer: tensor {} has {} values for shape of {} elements", name, tensor.values.size(), numel);
      pickle.text(name);
      pickle.global("torch._utils", "_rebuild_tensor_v2");
      pickle.mark();
      pickle.mark();
      pickle.text("storage");
      pickle.global("torch", "FloatStorage");
      const std::string key = std::to_string(storages.size());
      pickle.text(key);
      pickle.text("cpu");
      pickle.integer(numel);
      pickle.tuple();
      pickle.persistent_id();
      pickle.integer(0);
      pickle.mark();
      for (int64_t d : tensor.shape) pickle.integer(d);
      pickle.tuple();
      pickle.mark();
      int64_t stride = 1;
      std::vector<int64_t> strides(tensor.shape.size());
      for (size_t d = tensor.shape.size(); d-- > 0;) strides[d] = stride, stride *= tensor.shape[d];
      for (int64_t s : strides) pickle.integer(s);
      pickle.tuple();
      pickle.false_value();
      pickle.global("collections", "OrderedDict");
      pickle.empty_tuple();
      pickle.reduce();
      pickle.tuple();
      pickle.reduce();
      std::string data(tensor.values.size() * sizeof(float), '\0');
      if (!data.empty()) std::memcpy(data.data(), tensor.values.data(), data.size());  // little-endian hosts only (as the readers)
      storages.push_back(std::move(data));
    }
    pickle.set_items();
  }
  pickle.set_items();
  ZipWriter zip;
  zip.add(archive + "/data.pkl", pickle.finish());
  zip.add(archive + "/byteorder", "little");
  for (size_t i = 0; i < storages.size(); ++i) zip.add(archive + "/data/" + std::to_string(i), storages[i]);
  zip.add(archive + "/version", "3\n");
  return zip.finish();
}

}  // namespace cq
