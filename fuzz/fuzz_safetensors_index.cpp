// Fuzz target: a sharded checkpoint, model.safetensors.index.json plus one shard.
// Input: index.json NUL shard-bytes; the shard is stored as model-00001-of-00001.safetensors
// (the name the seeds' index uses).
#include "fuzz_common.h"
#include "io/safetensors.h"

CQ_FUZZ_TARGET(safetensors_index) {
  const auto parts = split(input, 2);
  const auto dir = fresh_dir();
  write_file(dir / "model.safetensors.index.json", parts[0]);
  write_file(dir / "model-00001-of-00001.safetensors", parts[1]);
  expect_only_cq_errors([&] {
    SafetensorsCheckpoint checkpoint(dir);
    for (const auto& [name, info] : checkpoint.tensors()) (void)checkpoint.tensor(name, info.shape);
  });
}
