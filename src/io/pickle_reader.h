#pragma once
// A restricted unpickler for what torch.save writes for a state dict (and for the dicts of
// tensors and lists that published calibration results are): it builds plain values and
// never imports, calls or executes anything. Only the opcodes such files contain are
// understood (protocols 2-4: containers, strings, numbers, memo, MARK, REDUCE, BUILD,
// BINPERSID); of the globals, only those that rebuild a state dict are accepted:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter
// and the torch.<Name>Storage type tags. Any other global (os.system, builtins.eval, ...) is refused
// the moment it is named, with an error naming the file and the global.
//
// Values live in an arena (indices, no owning pointers), so a hostile pickle cannot build
// cycles that leak or chains whose destruction recurses; the stack, memo, mark depth,
// nesting depth and value count are bounded (kMaxPickle*).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cq {

enum class PickleKind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

// What a persistent id ('storage', torch.<T>Storage, key, location, numel) names.
struct PickledStorage {
  std::string type;      // e.g. "FloatStorage"
  std::string key;       // the archive entry data/<key>
  int64_t numel = 0;     // elements of the storage's type
};

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...): a view of a storage.
struct PickledTensor {
  size_t storage = 0;    // index of a Storage value
  int64_t offset = 0;    // in elements
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

struct PickleValue {
  PickleKind kind = PickleKind::None;
  int64_t integer = 0;          // Int, Bool
  double number = 0;            // Float
  std::string text;             // String, Bytes; Global: "module.name"
  std::vector<size_t> items;    // Tuple, List: elements; Dict: key, value, key, value, ...
  PickledStorage storage;
  PickledTensor tensor;
  int depth = 0;                // nesting depth of containers
};

inline constexpr size_t kMaxPickleValues = 10'000'000;
inline constexpr size_t kMaxPickleMemo = 10'000'000;
inline constexpr size_t kMaxPickleStack = 1'000'000;
inline constexpr int kMaxPickleDepth = 64;
inline constexpr uint64_t kMaxPickleBytes = uint64_t{256} << 20;

class PickleReader {
 public:
  // Runs the pickle in `bytes`; `where` names the file in messages. Throws cq::Error for any
  // opcode or global outside the subset, malformed input, or a bound exceeded.
  PickleReader(std::span<const std::byte> bytes, std::string where);
  const PickleValue& value(size_t index) const { return values_.at(index); }
  size_t root() const { return root_; }
  const std::string& where() const { return where_; }
  // A short description of a value's kind, for messages ("a tuple", "a string", ...).
  static const char* kind_name(PickleKind kind);

 private:
  std::vector<PickleValue> values_;
  size_t root_ = 0;
  std::string where_;
};

}  // namespace cq
