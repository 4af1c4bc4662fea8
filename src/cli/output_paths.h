#pragma once
// Output paths are checked before any work starts (a run on a large model can take hours;
// failing at the end on a typo in --json throws that away).
#include <string>

namespace cq::cli {

// A file output (--json, --csv, --svg): its folder must exist and be writable, and the path
// must not be a directory. "" (not asked for) and "-" (stdout) pass. Errors name the flag,
// the user's path and the missing folder.
void check_output_file(const std::string& flag, const std::string& path);
// A directory output (--out DIR, created with its parents): the path must not be a file,
// and the nearest folder that exists must be a writable directory.
void check_output_directory(const std::string& flag, const std::string& path);

}  // namespace cq::cli
