#include "cli/output_paths.h"

#include <unistd.h>

#include <filesystem>

#include "util/error.h"

namespace cq::cli {

namespace {

namespace fs = std::filesystem;

// The folder a file `path` is written into ("." for a bare name).
fs::path folder_of(const fs::path& path) {
  const fs::path parent = path.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

void require_writable_folder(const std::string& flag, const std::string& path, const fs::path& folder) {
  std::error_code ec;
  if (!fs::exists(folder, ec)) fail("{} {}: folder {} does not exist", flag, path, folder.string());
  if (!fs::is_directory(folder, ec)) fail("{} {}: {} is not a folder", flag, path, folder.string());
  if (::access(folder.c_str(), W_OK | X_OK) != 0) fail("{} {}: folder {} is not writable", flag, path, folder.string());
}

}  // namespace

void check_output_file(const std::string& flag, const std::string& path) {
  if (path.empty() || path == "-") return;
  std::error_code ec;
  if (fs::is_directory(path, ec) || path.ends_with('/'))
    fail("{} {}: is a folder; give a file name", flag, path);
  require_writable_folder(flag, path, folder_of(path));
}

void check_output_directory(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    if (!fs::is_directory(path, ec)) fail("{} {}: exists and is not a folder", flag, path);
    require_writable_folder(flag, path, path);
    return;
  }
  // Created with its parents: the nearest existing ancestor must take new entries.
  fs::path ancestor = fs::path(path).lexically_normal().parent_path();
  while (!ancestor.empty() && !fs::exists(ancestor, ec)) ancestor = ancestor.parent_path();
  require_writable_folder(flag, path, ancestor.empty() ? fs::path(".") : ancestor);
}

}  // namespace cq::cli
