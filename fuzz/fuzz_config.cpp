// Fuzz target: config.json, both through load_model_config(dir) (file reading, BOM/CRLF)
// and through parse_model_config(json) on the in-memory document.
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "model/config.h"

CQ_FUZZ_TARGET(config) {
  const auto dir = fresh_dir();
  write_file(dir / "config.json", input);
  expect_only_cq_errors([&] {
    const ModelConfig config = load_model_config(dir);
    (void)tensor_names(config);
  });
  const auto json = nlohmann::json::parse(input.begin(), input.end(), nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) expect_only_cq_errors([&] { (void)parse_model_config(json, "config.json"); });
}
