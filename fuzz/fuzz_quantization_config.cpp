// Fuzz target: the `quantization_config` of a quantized checkpoint's config.json, through
// parse_quantization_config (the settings read_stored_quantization loads before checking the
// weights), on the document read from the file as the loader reads it.
// Input: config.json.
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "quant/checkpoint_format.h"
#include "util/text_file.h"

CQ_FUZZ_TARGET(quantization_config) {
  const auto path = fresh_dir() / "config.json";
  write_file(path, input);
  expect_only_cq_errors([&] {
    const nlohmann::json json = read_json_file(path);
    if (json.is_object() && json.contains("quantization_config"))
      (void)parse_quantization_config(json["quantization_config"], path.string()).describe();
  });
}
