// Fuzz target: the `cq sweep --grid` syntax (parse_sweep_grid), its expansion into
// configurations and their row labels. (Each configuration's flags are then resolved by the
// command's callback, which fuzz_cli runs.)
// Input: the --grid text.
#include "eval/sweep_report.h"
#include "fuzz_common.h"

CQ_FUZZ_TARGET(sweep_grid) {
  expect_only_cq_errors([&] {
    for (const SweepPoint& point : expand_sweep_grid(parse_sweep_grid(std::string(input)))) {
      (void)sweep_setting_label(point.scheme);
      (void)sweep_method_label(point.method, point.activation, point.alpha);
    }
  });
}
