#pragma once
// Each `cq` subcommand lives in its own file and registers itself here.
#include <CLI/CLI.hpp>

namespace cq::cli {

// The whole `cq` command line: every subcommand registered (main.cpp and the CLI fuzzer).
void configure_app(CLI::App& app);

void add_info_command(CLI::App& app);
void add_ppl_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_kernel_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_omniquant_calibrate_command(CLI::App& app);

}  // namespace cq::cli
