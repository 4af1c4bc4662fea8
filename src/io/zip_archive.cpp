#include "io/zip_archive.h"

#include <algorithm>
#include <cstring>

#include "util/error.h"

namespace cq {

namespace {

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndOfCentralDirectorySignature = 0x06054b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr size_t kEndRecordBytes = 22;
constexpr size_t kZip64LocatorBytes = 20;
constexpr size_t kZip64EndRecordBytes = 56;
constexpr size_t kCentralHeaderBytes = 46;
constexpr size_t kLocalHeaderBytes = 30;
constexpr size_t kMaxCommentBytes = 0xffff;

// Little-endian reads at a checked position of the archive.
class Reader {
 public:
  Reader(std::span<const std::byte> bytes, const std::string& where) : bytes_(bytes), where_(where) {}
  void need(uint64_t offset, uint64_t count, const char* what) const {
    if (offset > bytes_.size() || count > bytes_.size() - offset)
      fail("{}: truncated or corrupt zip: {} at byte {} ({} bytes) lies beyond the end ({} bytes)", where_, what, offset,
           count, bytes_.size());
  }
  template <typename T>
  T read(uint64_t offset) const {
    need(offset, sizeof(T), "a field");
    T value;
    std::memcpy(&value, bytes_.data() + offset, sizeof(T));
    return value;
  }
  std::string text(uint64_t offset, uint64_t count) const {
    need(offset, count, "a name");
    return std::string(reinterpret_cast<const char*>(bytes_.data() + offset), count);
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& where_;
};

struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

Directory find_central_directory(const Reader& in, uint64_t archive_bytes, const std::string& where) {
  if (archive_bytes < kEndRecordBytes) fail("{}: truncated zip: {} bytes, no end-of-central-directory record", where, archive_bytes);
  // The end record is the last thing in the file, followed only by its comment.
  const uint64_t lowest = archive_bytes > kEndRecordBytes + kMaxCommentBytes ? archive_bytes - kEndRecordBytes - kMaxCommentBytes : 0;
  uint64_t end = archive_bytes - kEndRecordBytes;
  for (;; --end) {
    if (in.read<uint32_t>(end) == kEndOfCentralDirectorySignature &&
        end + kEndRecordBytes + in.read<uint16_t>(end + 20) == archive_bytes)
      break;
    if (end == lowest) fail("{}: not a zip archive or truncated: no end-of-central-directory record", where);
  }
  if (in.read<uint16_t>(end + 4) != 0 || in.read<uint16_t>(end + 6) != 0)
    fail("{}: multi-disk zip archives are not supported", where);
  Directory dir;
  dir.entries = in.read<uint16_t>(end + 10);
  dir.size = in.read<uint32_t>(end + 12);
  dir.offset = in.read<uint32_t>(end + 16);
  const bool zip64 = dir.entries == 0xffff || dir.size == 0xffffffff || dir.offset == 0xffffffff;
  if (zip64 && end >= kZip64LocatorBytes && in.read<uint32_t>(end - kZip64LocatorBytes) == kZip64LocatorSignature) {
    const auto record = in.read<uint64_t>(end - kZip64LocatorBytes + 8);
    in.need(record, kZip64EndRecordBytes, "the ZIP64 end record");
    if (in.read<uint32_t>(record) != kZip64EndSignature) fail("{}: corrupt zip: bad ZIP64 end-of-central-directory record", where);
    dir.entries = in.read<uint64_t>(record + 32);
    dir.size = in.read<uint64_t>(record + 40);
    dir.offset = in.read<uint64_t>(record + 48);
  } else if (zip64 && dir.entries != 0xffff) {
    fail("{}: corrupt zip: the end record asks for ZIP64 but there is no ZIP64 locator", where);
  }
  in.need(dir.offset, dir.size, "the central directory");
  if (dir.entries > kMaxZipEntries) fail("{}: zip lists {} entries (limit {})", where, dir.entries, kMaxZipEntries);
  if (dir.entries > dir.size / kCentralHeaderBytes)
    fail("{}: corrupt zip: {} entries cannot fit in a central directory of {} bytes", where, dir.entries, dir.size);
  return dir;
}

// ZIP64 extended information: the 64-bit values of the fields that are 0xffffffff, in order.
void apply_zip64_extra(const Reader& in, uint64_t extra, uint64_t extra_bytes, ZipEntry& entry, bool size_full,
                       bool compressed_full, bool offset_full, const std::string& where) {
  uint64_t pos = extra;
  const uint64_t end = extra + extra_bytes;
  while (pos + 4 <= end) {
    const auto id = in.read<uint16_t>(pos);
    const auto bytes = in.read<uint16_t>(pos + 2);
    if (pos + 4 + bytes > end) fail("{}: corrupt zip: extra field of '{}' overruns its header", where, entry.name);
    if (id == kZip64ExtraId) {
      uint64_t field = pos + 4;
      const uint64_t field_end = field + bytes;
      auto take = [&](uint64_t& value) {
        if (field + 8 > field_end) fail("{}: corrupt zip: short ZIP64 field in '{}'", where, entry.name);
        value = in.read<uint64_t>(field);
        field += 8;
      };
      if (size_full) take(entry.size);
      if (compressed_full) take(entry.compressed_size);
      if (offset_full) take(entry.local_header_offset);
      return;
    }
    pos += 4 + bytes;
  }
  if (size_full || compressed_full || offset_full)
    fail("{}: corrupt zip: entry '{}' needs a ZIP64 field that is missing", where, entry.name);
}

}  // namespace

bool looks_like_zip(std::span<const std::byte> bytes) {
  uint32_t signature = 0;
  if (bytes.size() < 4) return false;
  std::memcpy(&signature, bytes.data(), 4);
  return signature == kLocalHeaderSignature;
}

ZipArchive::ZipArchive(std::span<const std::byte> bytes, std::string where) : bytes_(bytes), where_(std::move(where)) {
  const Reader in(bytes_, where_);
  const Directory dir = find_central_directory(in, bytes_.size(), where_);
  uint64_t pos = dir.offset;
  const uint64_t dir_end = dir.offset + dir.size;
  for (uint64_t i = 0; i < dir.entries; ++i) {
    if (pos + kCentralHeaderBytes > dir_end) fail("{}: corrupt zip: central directory ends after {} of {} entries", where_, i, dir.entries);
    if (in.read<uint32_t>(pos) != kCentralHeaderSignature) fail("{}: corrupt zip: bad central directory entry {}", where_, i);
    ZipEntry entry;
    const auto flags = in.read<uint16_t>(pos + 8);
    entry.compression = in.read<uint16_t>(pos + 10);
    entry.compressed_size = in.read<uint32_t>(pos + 20);
    entry.size = in.read<uint32_t>(pos + 24);
    const auto name_bytes = in.read<uint16_t>(pos + 28);
    const auto extra_bytes = in.read<uint16_t>(pos + 30);
    const auto comment_bytes = in.read<uint16_t>(pos + 32);
    entry.local_header_offset = in.read<uint32_t>(pos + 42);
    const uint64_t next = pos + kCentralHeaderBytes + name_bytes + extra_bytes + comment_bytes;
    if (next > dir_end) fail("{}: corrupt zip: central directory entry {} overruns the directory", where_, i);
    entry.name = in.text(pos + kCentralHeaderBytes, name_bytes);
    if (flags & 0x1) fail("{}: zip entry '{}' is encrypted", where_, entry.name);
    apply_zip64_extra(in, pos + kCentralHeaderBytes + name_bytes, extra_bytes, entry, entry.size == 0xffffffff,
                      entry.compressed_size == 0xffffffff, entry.local_header_offset == 0xffffffff, where_);
    if (!index_.emplace(entry.name, entries_.size()).second) fail("{}: zip lists entry '{}' twice", where_, entry.name);
    entries_.push_back(std::move(entry));
    pos = next;
  }
}

const ZipEntry* ZipArchive::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::byte> ZipArchive::data(const ZipEntry& entry) const {
  if (entry.compression != 0)
    fail("{}: zip entry '{}' is compressed (method {}); torch.save stores entries uncompressed, so the file was "
         "re-zipped -- unzip and re-store it with `zip -0`, or save it again with torch.save",
         where_, entry.name, entry.compression);
  if (entry.compressed_size != entry.size)
    fail("{}: corrupt zip: stored entry '{}' has compressed size {} but size {}", where_, entry.name,
         entry.compressed_size, entry.size);
  const Reader in(bytes_, where_);
  const uint64_t header = entry.local_header_offset;
  in.need(header, kLocalHeaderBytes, "a local header");
  if (in.read<uint32_t>(header) != kLocalHeaderSignature)
    fail("{}: corrupt zip: entry '{}' has no local header at byte {}", where_, entry.name, header);
  if (in.read<uint16_t>(header + 8) != entry.compression)
    fail("{}: corrupt zip: entry '{}': local and central headers disagree on the compression", where_, entry.name);
  // Without a data descriptor (flag bit 3; torch.save sets it and leaves these zero) the
  // local header repeats the sizes, and they must agree.
  const bool descriptor = (in.read<uint16_t>(header + 6) & 0x8) != 0;
  const auto local_compressed = in.read<uint32_t>(header + 18), local_size = in.read<uint32_t>(header + 22);
  if (!descriptor && local_size != 0xffffffff && (local_size != entry.size || local_compressed != entry.compressed_size))
    fail("{}: corrupt zip: entry '{}' has {} bytes in its local header but {} in the central directory", where_,
         entry.name, local_size, entry.size);
  const auto name_bytes = in.read<uint16_t>(header + 26);
  const auto extra_bytes = in.read<uint16_t>(header + 28);
  if (in.text(header + kLocalHeaderBytes, name_bytes) != entry.name)
    fail("{}: corrupt zip: entry '{}': local and central headers disagree on the name", where_, entry.name);
  const uint64_t start = header + kLocalHeaderBytes + name_bytes + extra_bytes;
  if (start > bytes_.size() || entry.size > bytes_.size() - start)
    fail("{}: truncated or corrupt zip: entry '{}' claims {} bytes at byte {}, beyond the end ({} bytes)", where_,
         entry.name, entry.size, start, bytes_.size());
  return bytes_.subspan(start, entry.size);
}

}  // namespace cq
