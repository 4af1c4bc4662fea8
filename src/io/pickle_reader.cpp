#include "io/pickle_reader.h"

#include <bit>
#include <cctype>
#include <string_view>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "util/error.h"

namespace cq {

namespace {

// torch.<Name>Storage: a type tag in a persistent id, never called (REDUCE refuses it), so
// an unknown one (torch.ComplexFloatStorage) is let through to be refused by its dtype with
// a clearer message.
bool is_storage_type(const std::string& global) {
  constexpr std::string_view kModule = "torch.", kSuffix = "Storage";
  if (!global.starts_with(kModule) || !global.ends_with(kSuffix) || global.size() == kModule.size() + kSuffix.size()) return false;
  for (size_t i = kModule.size(); i < global.size(); ++i)
    if (!std::isalnum(static_cast<unsigned char>(global[i]))) return false;
  return true;
}

bool is_allowed_global(const std::string& global) {
  return global == "collections.OrderedDict" || global == "torch._utils._rebuild_tensor_v2" ||
         global == "torch._utils._rebuild_parameter" || is_storage_type(global);
}

constexpr size_t kMaxGlobalNameBytes = 256;
constexpr size_t kMaxTensorDims = 16;

class Machine {
 public:
  Machine(std::span<const std::byte> bytes, const std::string& where, std::vector<PickleValue>& values)
      : bytes_(bytes), where_(where), values_(values) {}

  size_t run() {
    if (bytes_.size() > kMaxPickleBytes) fail("{}: pickle of {} bytes (limit {})", where_, bytes_.size(), kMaxPickleBytes);
    while (true) {
      const auto op = static_cast<uint8_t>(take(1)[0]);
      switch (op) {
        case 0x80: {  // PROTO
          const auto protocol = u8();
          if (protocol > 5) fail("{}: pickle protocol {} is not supported", where_, protocol);
          break;
        }
        case 0x95: (void)take(8); break;  // FRAME: a length hint only
        case 'c': {                       // GLOBAL module\nname\n
          std::string module = line();
          std::string name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const size_t name = pop(), module = pop();
          if (values_[module].kind != PickleKind::String || values_[name].kind != PickleKind::String)
            fail("{}: malformed pickle: STACK_GLOBAL needs two strings", where_);
          push_global(values_[module].text + "." + values_[name].text);
          break;
        }
        case 'q': memo_put(u8()); break;
        case 'r': memo_put(u32()); break;
        case 0x94: memo_put(static_cast<uint32_t>(memo_.size())); break;  // MEMOIZE
        case 'h': memo_get(u8()); break;
        case 'j': memo_get(u32()); break;
        case '(':
          if (marks_.size() >= kMaxPickleStack) fail("{}: pickle nests more than {} marks", where_, kMaxPickleStack);
          marks_.push_back(stack_.size());
          break;
        case ')': push(make(PickleKind::Tuple)); break;
        case 't': push(make_sequence(PickleKind::Tuple, pop_mark())); break;
        case 0x85: push(make_sequence(PickleKind::Tuple, pop_n(1))); break;
        case 0x86: push(make_sequence(PickleKind::Tuple, pop_n(2))); break;
        case 0x87: push(make_sequence(PickleKind::Tuple, pop_n(3))); break;
        case ']': push(make(PickleKind::List)); break;
        case '}': push(make(PickleKind::Dict)); break;
        case 'N': push(make(PickleKind::None)); break;
        case 0x88: push_int(PickleKind::Bool, 1); break;
        case 0x89: push_int(PickleKind::Bool, 0); break;
        case 'K': push_int(PickleKind::Int, u8()); break;
        case 'M': push_int(PickleKind::Int, u16()); break;
        case 'J': push_int(PickleKind::Int, static_cast<int32_t>(u32())); break;
        case 0x8a: push_int(PickleKind::Int, long1()); break;
        case 'G': {  // BINFLOAT: big-endian double
          uint64_t bits = 0;
          for (std::byte b : take(8)) bits = (bits << 8) | static_cast<uint8_t>(b);
          const size_t v = make(PickleKind::Float);
          values_[v].number = std::bit_cast<double>(bits);
          push(v);
          break;
        }
        case 'X': push_text(PickleKind::String, u32()); break;
        case 0x8c: push_text(PickleKind::String, u8()); break;
        case 0x8d: push_text(PickleKind::String, u64()); break;
        case 'B': push_text(PickleKind::Bytes, u32()); break;
        case 'C': push_text(PickleKind::Bytes, u8()); break;
        case 'a': {
          const size_t item = pop();
          append(top(), item);
          break;
        }
        case 'e': {
          const std::vector<size_t> items = pop_mark();
          const size_t list = top();
          for (size_t item : items) append(list, item);
          break;
        }
        case 's': {
          const size_t v = pop(), k = pop();
          set_item(top(), k, v);
          break;
        }
        case 'u': {
          const std::vector<size_t> items = pop_mark();
          if (items.size() % 2 != 0) fail("{}: malformed pickle: SETITEMS with an odd number of items", where_);
          const size_t dict = top();
          for (size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
          break;
        }
        case 'R': {
          const size_t args = pop(), callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 'Q': push(persistent_load(pop())); break;
        case 'b': {
          const size_t state = pop();
          build(top(), state);
          break;
        }
        case '.':
          if (stack_.size() != 1 || !marks_.empty())
            fail("{}: malformed pickle: STOP with {} values on the stack", where_, stack_.size());
          return stack_.back();
        default:
          fail("{}: pickle opcode 0x{:02x} at byte {} is not one a state dict uses; refused", where_, op, pos_ - 1);
      }
    }
  }

 private:
  std::span<const std::byte> take(uint64_t count) {
    if (count > bytes_.size() - pos_) fail("{}: truncated pickle: needs {} more bytes at byte {}", where_, count, pos_);
    auto out = bytes_.subspan(pos_, count);
    pos_ += count;
    return out;
  }
  uint64_t little(int count) {
    uint64_t value = 0;
    auto raw = take(static_cast<uint64_t>(count));
    for (int i = count - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
    return value;
  }
  uint32_t u8() { return static_cast<uint32_t>(little(1)); }
  uint32_t u16() { return static_cast<uint32_t>(little(2)); }
  uint32_t u32() { return static_cast<uint32_t>(little(4)); }
  uint64_t u64() { return little(8); }
  int64_t long1() {
    const uint32_t count = u8();
    if (count > 8) fail("{}: pickle integer of {} bytes is too large", where_, count);
    if (count == 0) return 0;
    uint64_t value = little(static_cast<int>(count));
    if (count < 8 && (value >> (8 * count - 1)) & 1) value |= ~uint64_t{0} << (8 * count);  // sign-extend
    return static_cast<int64_t>(value);
  }
  std::string line() {
    std::string out;
    while (true) {
      const char c = static_cast<char>(take(1)[0]);
      if (c == '\n') return out;
      if (out.size() >= kMaxGlobalNameBytes) fail("{}: malformed pickle: global name longer than {} bytes", where_, kMaxGlobalNameBytes);
      out.push_back(c);
    }
  }

  size_t make(PickleKind kind) {
    if (values_.size() >= kMaxPickleValues) fail("{}: pickle builds more than {} values (limit)", where_, kMaxPickleValues);
    values_.emplace_back();
    values_.back().kind = kind;
    return values_.size() - 1;
  }
  void push(size_t value) {
    if (stack_.size() >= kMaxPickleStack) fail("{}: pickle stack deeper than {} (limit)", where_, kMaxPickleStack);
    stack_.push_back(value);
  }
  void push_int(PickleKind kind, int64_t value) {
    const size_t v = make(kind);
    values_[v].integer = value;
    push(v);
  }
  void push_text(PickleKind kind, uint64_t count) {
    auto raw = take(count);
    const size_t v = make(kind);
    values_[v].text.assign(reinterpret_cast<const char*>(raw.data()), raw.size());
    push(v);
  }
  void push_global(const std::string& global) {
    if (!is_allowed_global(global))
      fail("{}: pickle refers to global '{}', which a state dict never needs; refused (nothing is imported or run)",
           where_, global);
    const size_t v = make(PickleKind::Global);
    values_[v].text = global;
    push(v);
  }
  size_t pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      fail("{}: malformed pickle: stack underflow at byte {}", where_, pos_ - 1);
    const size_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  size_t top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      fail("{}: malformed pickle: stack underflow at byte {}", where_, pos_ - 1);
    return stack_.back();
  }
  std::vector<size_t> pop_n(size_t count) {
    std::vector<size_t> items(count);
    for (size_t i = count; i > 0; --i) items[i - 1] = pop();
    return items;
  }
  std::vector<size_t> pop_mark() {
    if (marks_.empty()) fail("{}: malformed pickle: no MARK at byte {}", where_, pos_ - 1);
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<size_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void memo_put(uint32_t index) {
    if (memo_.size() >= kMaxPickleMemo && !memo_.count(index)) fail("{}: pickle memo beyond {} entries (limit)", where_, kMaxPickleMemo);
    memo_[index] = top();
  }
  void memo_get(uint32_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("{}: malformed pickle: memo entry {} read before it is written", where_, index);
    push(it->second);
  }

  void nest(size_t container, size_t item) {
    const int depth = values_[item].depth + 1;
    if (depth > kMaxPickleDepth) fail("{}: pickle nests containers deeper than {} (limit)", where_, kMaxPickleDepth);
    values_[container].depth = std::max(values_[container].depth, depth);
  }
  size_t make_sequence(PickleKind kind, const std::vector<size_t>& items) {
    const size_t v = make(kind);
    for (size_t item : items) nest(v, item);
    values_[v].items = items;
    return v;
  }
  void append(size_t list, size_t item) {
    if (values_[list].kind != PickleKind::List)
      fail("{}: malformed pickle: APPEND to {}", where_, PickleReader::kind_name(values_[list].kind));
    nest(list, item);
    values_[list].items.push_back(item);
  }
  void set_item(size_t dict, size_t key, size_t value) {
    if (values_[dict].kind != PickleKind::Dict)
      fail("{}: malformed pickle: SETITEM on {}", where_, PickleReader::kind_name(values_[dict].kind));
    const PickleValue& k = values_[key];
    // Strings and integers never compare equal in Python: tag each kind.
    std::string identity(1, k.kind == PickleKind::String ? 's' : 'i');
    if (k.kind == PickleKind::String) identity += k.text;
    else if (k.kind == PickleKind::Int || k.kind == PickleKind::Bool) identity += std::to_string(k.integer);
    else fail("{}: pickle uses {} as a dict key; a state dict's keys are strings", where_, PickleReader::kind_name(k.kind));
    if (!dict_keys_[dict].insert(identity).second)
      fail("{}: key '{}' appears twice in one dict (a key collision)", where_,
           k.kind == PickleKind::String ? k.text : std::to_string(k.integer));
    nest(dict, value);
    values_[dict].items.push_back(key);
    values_[dict].items.push_back(value);
  }

  const PickleValue& argument(const std::vector<size_t>& args, size_t i, PickleKind kind, const std::string& function) {
    const PickleValue& v = values_[args[i]];
    if (v.kind != kind)
      fail("{}: {}: argument {} is {}, expected {}", where_, function, i + 1, PickleReader::kind_name(v.kind),
           PickleReader::kind_name(kind));
    return v;
  }
  std::vector<int64_t> int_tuple(const std::vector<size_t>& args, size_t i, const std::string& function) {
    const PickleValue& t = argument(args, i, PickleKind::Tuple, function);
    if (t.items.size() > kMaxTensorDims) fail("{}: {}: {} dimensions (limit {})", where_, function, t.items.size(), kMaxTensorDims);
    std::vector<int64_t> out;
    for (size_t item : t.items) {
      if (values_[item].kind != PickleKind::Int) fail("{}: {}: argument {} holds a non-integer", where_, function, i + 1);
      out.push_back(values_[item].integer);
    }
    return out;
  }

  size_t reduce(size_t callable, size_t args_index) {
    if (values_[callable].kind != PickleKind::Global)
      fail("{}: malformed pickle: REDUCE calls {}", where_, PickleReader::kind_name(values_[callable].kind));
    if (values_[args_index].kind != PickleKind::Tuple) fail("{}: malformed pickle: REDUCE arguments are not a tuple", where_);
    const std::string function = values_[callable].text;
    const std::vector<size_t> args = values_[args_index].items;
    if (function == "collections.OrderedDict") {
      if (!args.empty()) fail("{}: collections.OrderedDict with arguments is not supported", where_);
      return make(PickleKind::Dict);
    }
    if (function == "torch._utils._rebuild_parameter") {
      if (args.size() != 3) fail("{}: {} takes 3 arguments, got {}", where_, function, args.size());
      (void)argument(args, 0, PickleKind::Tensor, function);
      return args[0];
    }
    if (function == "torch._utils._rebuild_tensor_v2") {
      if (args.size() < 4 || args.size() > 7) fail("{}: {} with {} arguments", where_, function, args.size());
      (void)argument(args, 0, PickleKind::Storage, function);
      const size_t v = make(PickleKind::Tensor);
      PickledTensor tensor;
      tensor.storage = args[0];
      tensor.offset = argument(args, 1, PickleKind::Int, function).integer;
      tensor.size = int_tuple(args, 2, function);
      tensor.stride = int_tuple(args, 3, function);
      if (tensor.size.size() != tensor.stride.size())
        fail("{}: {}: size has {} dimensions but stride {}", where_, function, tensor.size.size(), tensor.stride.size());
      values_[v].tensor = std::move(tensor);
      values_[v].depth = 1;
      return v;
    }
    fail("{}: pickle calls '{}', which a state dict never does; refused", where_, function);
  }

  size_t persistent_load(size_t pid) {
    const PickleValue& id = values_[pid];
    const std::string what = "persistent id";
    if (id.kind != PickleKind::Tuple || id.items.size() != 5 || values_[id.items[0]].kind != PickleKind::String ||
        values_[id.items[0]].text != "storage")
      fail("{}: {} is not ('storage', type, key, location, numel)", where_, what);
    const PickleValue& type = values_[id.items[1]];
    if (type.kind != PickleKind::Global || !is_storage_type(type.text))
      fail("{}: {} names {} instead of a torch storage type", where_, what, PickleReader::kind_name(type.kind));
    const PickleValue& key = values_[id.items[2]];
    const PickleValue& numel = values_[id.items[4]];
    if (key.kind != PickleKind::String || numel.kind != PickleKind::Int || numel.integer < 0)
      fail("{}: {} needs a string key and a non-negative element count", where_, what);
    PickledStorage storage{type.text.substr(std::string("torch.").size()), key.text, numel.integer};
    const size_t v = make(PickleKind::Storage);  // may move values_: `id` and its parts are dead now
    values_[v].storage = std::move(storage);
    return v;
  }

  // OrderedDict's state (a state dict's `_metadata` attribute: per-module versions) is
  // recognised and dropped; BUILD on anything else would set attributes of an object.
  void build(size_t target, size_t state) {
    if (values_[target].kind != PickleKind::Dict || (values_[state].kind != PickleKind::Dict && values_[state].kind != PickleKind::None))
      fail("{}: pickle BUILD on {} is not part of a state dict; refused", where_, PickleReader::kind_name(values_[target].kind));
  }

  std::span<const std::byte> bytes_;
  const std::string& where_;
  std::vector<PickleValue>& values_;
  uint64_t pos_ = 0;
  std::vector<size_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, size_t> memo_;
  std::unordered_map<size_t, std::unordered_set<std::string>> dict_keys_;
};

}  // namespace

PickleReader::PickleReader(std::span<const std::byte> bytes, std::string where) : where_(std::move(where)) {
  Machine machine(bytes, where_, values_);
  root_ = machine.run();
}

const char* PickleReader::kind_name(PickleKind kind) {
  switch (kind) {
    case PickleKind::None: return "None";
    case PickleKind::Bool: return "a bool";
    case PickleKind::Int: return "an integer";
    case PickleKind::Float: return "a float";
    case PickleKind::String: return "a string";
    case PickleKind::Bytes: return "bytes";
    case PickleKind::Tuple: return "a tuple";
    case PickleKind::List: return "a list";
    case PickleKind::Dict: return "a dict";
    case PickleKind::Global: return "a global";
    case PickleKind::Storage: return "a storage";
    case PickleKind::Tensor: return "a tensor";
  }
  return "?";
}

}  // namespace cq
