#pragma once
// Command-line parse errors as one `cq: error:` line, with a "did you mean" suggestion for a
// near-miss flag or subcommand (`--schem` -> `--scheme`).
#include <CLI/CLI.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cq::cli {

// Levenshtein distance (insertions, deletions, substitutions).
std::size_t edit_distance(std::string_view a, std::string_view b);
// " (did you mean --scheme?)" for the first argument that names no flag or subcommand of
// `app` but is close to one; "" when there is none.
std::string near_miss_suggestion(const CLI::App& app, const std::vector<std::string>& arguments);
// Prints `error` (help and --version as CLI11 prints them) and returns the exit code.
int report_parse_error(CLI::App& app, const CLI::ParseError& error, const std::vector<std::string>& arguments);

}  // namespace cq::cli
