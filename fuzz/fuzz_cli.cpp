// Fuzz target: the `cq` command-line parser (CLI11 app with every subcommand registered
// by cq::cli::configure_app, as src/cli/main.cpp does), on fuzzed argv. Subcommand callbacks are replaced by
// no-ops, so only parsing and option validation run (no model is loaded, no file written).
// Input: arguments separated by NUL bytes. CLI::ParseError (including --help/--version)
// and cq::Error are expected outcomes.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "fuzz_common.h"

CQ_FUZZ_TARGET(cli) {
  CLI::App app{"cq"};
  cq::cli::configure_app(app);
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) sub->callback([] {});
  std::vector<std::string> args;
  std::string_view rest = input;
  while (args.size() < 64) {
    const size_t nul = rest.find('\0');
    args.emplace_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes argv reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError&) {
  } catch (const cq::Error&) {
  }
}
