#pragma once
// Read-only view of a zip archive held in memory (a mapped file): the central directory,
// each entry's local header, ZIP64 sizes and offsets. Only stored (uncompressed) entries can
// be read -- torch.save writes nothing else -- so an entry's data is a span of the mapping,
// never a copy. Every size and offset is checked against the archive's bounds; any
// inconsistency is a cq::Error naming the archive. CRCs are not verified (that would read
// the whole model up front; the safetensors reader checks no checksum either).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace cq {

struct ZipEntry {
  std::string name;
  uint16_t compression = 0;          // 0 = stored
  uint64_t size = 0;                 // uncompressed bytes
  uint64_t compressed_size = 0;
  uint64_t local_header_offset = 0;
};

// More entries than any real checkpoint has (one per storage; ~10^4 for the largest models).
inline constexpr size_t kMaxZipEntries = 1'000'000;

class ZipArchive {
 public:
  // `bytes` must outlive the archive; `where` names it in messages (the file's path).
  ZipArchive(std::span<const std::byte> bytes, std::string where);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry named `name`, or nullptr.
  const ZipEntry* find(const std::string& name) const;
  // The data of a stored entry, checked against its local header and the archive's end.
  // A compressed entry is refused (cq::Error naming archive, entry and method).
  std::span<const std::byte> data(const ZipEntry& entry) const;
  const std::string& where() const { return where_; }

 private:
  std::span<const std::byte> bytes_;
  std::string where_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_ (one lookup per storage)
};

// Whether `bytes` begin like a zip archive (a local file header signature).
bool looks_like_zip(std::span<const std::byte> bytes);

}  // namespace cq
