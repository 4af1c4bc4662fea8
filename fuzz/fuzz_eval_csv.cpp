// Fuzz target: the RFC 4180 CSV reader of the evaluation data (MMLU files), and the text
// helpers the task templates apply to the fields (python_strip/capitalize/length).
#include "eval/eval_data.h"
#include "fuzz_common.h"

CQ_FUZZ_TARGET(eval_csv) {
  expect_only_cq_errors([&] {
    for (const auto& row : parse_csv(input, "fuzz.csv"))
      for (const auto& field : row.fields) {
        (void)python_strip(field);
        (void)python_rstrip(field);
        (void)python_capitalize(field);
        (void)python_length(field);
      }
  });
}
