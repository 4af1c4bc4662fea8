// `cq`: a thin command-line layer over the crossquant library.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"crossquant: post-training quantization of OPT and LLaMA models (CrossQuant, SmoothQuant, AWQ)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cq 0.1.0");
  cq::cli::add_info_command(app);
  cq::cli::add_ppl_command(app);
  cq::cli::add_generate_command(app);
  cq::cli::add_tokenize_command(app);
  cq::cli::add_kernel_command(app);
  cq::cli::add_synth_command(app);
  cq::cli::add_demo_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const cq::Error& e) {
    std::fprintf(stderr, "cq: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "cq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
