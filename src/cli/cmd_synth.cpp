// `cq synth --preset NAME --out DIR`: writes a generated model (tests, benchmarks, demo).
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/output_paths.h"
#include "model/synthetic.h"

namespace cq::cli {

void add_synth_command(CLI::App& app) {
  struct Options {
    std::string preset, out;
    bool list = false;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("synth", "write a generated model with deterministic weights");
  command->add_option("--preset", options->preset, "preset name (see --list)");
  command->add_option("--out", options->out, "output model directory");
  command->add_flag("--list", options->list, "list the presets");
  command->callback([options] {
    if (options->list || options->preset.empty()) {
      for (const auto& name : synthetic_presets()) fmt::print("{}\n", name);
      return;
    }
    if (options->out.empty()) throw CLI::RequiredError("--out");
    check_output_directory("--out", options->out);
    write_synthetic_model(options->preset, options->out);
    fmt::print("wrote {} to {}\n", options->preset, options->out);
  });
}

}  // namespace cq::cli
