#include "cli/commands.h"

namespace cq::cli {

void configure_app(CLI::App& app) {
  app.require_subcommand(1);
  app.set_version_flag("--version", "cq 0.1.0");
  add_info_command(app);
  add_ppl_command(app);
  add_generate_command(app);
  add_tokenize_command(app);
  add_kernel_command(app);
  add_synth_command(app);
  add_demo_command(app);
  add_eval_command(app);
  add_quantize_command(app);
  add_export_command(app);
  add_bench_command(app);
  add_sweep_command(app);
  add_omniquant_calibrate_command(app);
}

}  // namespace cq::cli
