// Fuzz target: the `cq` command line, as src/cli/main.cpp runs it (CLI11 app with every
// subcommand registered by cq::cli::configure_app), on fuzzed argv, callbacks included. Every
// command checks its options before it opens a file (the quantization flags resolved, the
// `cq sweep --grid` points resolved, `cq bench` counts, `cq kernel --alphas`, `cq eval --tasks`),
// so run in an empty scratch directory, with arguments naming nothing outside it (no '/' or
// '..'), a command stops with a cq::Error at its first file. Inputs naming `synth` or `demo`
// are skipped: they need no input file (they generate a model and run it). (Their callbacks
// cannot be swapped for no-ops: a callback owns the options it parses into.)
// Input: arguments separated by NUL bytes. CLI::ParseError and cq::Error are expected outcomes.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "fuzz_common.h"

namespace cq::fuzz {

// Changes the working directory for its lifetime.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const std::filesystem::path& dir) : previous_(std::filesystem::current_path()) {
    std::filesystem::current_path(dir);
  }
  ~WorkingDirectory() { std::filesystem::current_path(previous_); }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  std::filesystem::path previous_;
};

}  // namespace cq::fuzz

CQ_FUZZ_TARGET(cli) {
  std::vector<std::string> args;
  for (std::string_view arg : split(input, 64)) {
    if (arg.find('/') != std::string_view::npos || arg.find("..") != std::string_view::npos) return;
    if (arg == "synth" || arg == "demo") return;
    args.emplace_back(arg);
  }
  const WorkingDirectory in_scratch(fresh_dir());
  CLI::App app{"cq"};
  cq::cli::configure_app(app);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes argv reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError&) {
  } catch (const cq::Error&) {
  }
}
