#include "cli/parse_errors.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <utility>

namespace cq::cli {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

namespace {

// The closest candidate within a typo's reach: a third of the word, at least 2 edits.
std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const std::string& candidate : candidates) {
    const std::size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) best = candidate, best_distance = distance;
  }
  return best;
}

std::vector<std::string> long_flags(const CLI::App& command) {
  std::vector<std::string> flags;
  for (const CLI::Option* option : command.get_options())
    for (const std::string& name : option->get_lnames()) flags.push_back("--" + name);
  return flags;
}

}  // namespace

std::string near_miss_suggestion(const CLI::App& app, const std::vector<std::string>& arguments) {
  std::vector<std::string> subcommands;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) subcommands.push_back(sub->get_name());
  const CLI::App* command = nullptr;
  for (const std::string& argument : arguments) {
    if (argument.empty()) continue;
    if (argument.starts_with("--")) {
      const std::string flag = argument.substr(0, argument.find('='));
      const std::vector<std::string> known = long_flags(command ? *command : app);
      if (std::find(known.begin(), known.end(), flag) != known.end()) continue;
      const std::string match = closest(flag, known);
      if (!match.empty()) return " (did you mean " + match + "?)";
      continue;
    }
    if (command || argument.starts_with("-")) continue;  // a value, or a short flag
    if (std::find(subcommands.begin(), subcommands.end(), argument) != subcommands.end()) {
      command = app.get_subcommand(argument);
      continue;
    }
    const std::string match = closest(argument, subcommands);
    if (!match.empty()) return " (did you mean cq " + match + "?)";
    return "";
  }
  return "";
}

int report_parse_error(CLI::App& app, const CLI::ParseError& error, const std::vector<std::string>& arguments) {
  // --help and --version are "errors" with exit code 0: CLI11 prints them.
  if (error.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(error);
  std::string message = error.what();
  // `cq pll`: CLI11 says only that a subcommand is required.
  if (!arguments.empty() && !arguments.front().empty() && !arguments.front().starts_with("-") &&
      !std::as_const(app).get_subcommands([&](const CLI::App* sub) { return sub->get_name() == arguments.front(); }).size())
    message = "'" + arguments.front() + "' is not a cq command";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  std::replace(message.begin(), message.end(), '\n', ' ');
  std::fprintf(stderr, "cq: error: %s%s\n", message.c_str(), near_miss_suggestion(app, arguments).c_str());
  return error.get_exit_code();
}

}  // namespace cq::cli
