// Fuzz target: one safetensors file (8-byte length, JSON header, data section).
// Input: the file's bytes. Accepted files are read back (bounded) to check that every tensor
// the header promised lies inside the mapping: floating-point ones through convert_to_f32,
// integer ones (I8, U8, I32) through their accessors.
#include <algorithm>

#include "fuzz_common.h"
#include "io/safetensors.h"

CQ_FUZZ_TARGET(safetensors) {
  const auto dir = fresh_dir();
  write_file(dir / "model.safetensors", input);
  expect_only_cq_errors([&] {
    SafetensorsCheckpoint checkpoint(dir);
    (void)checkpoint.dominant_dtype();
    (void)checkpoint.file_bytes();
    for (const auto& [name, info] : checkpoint.tensors()) {
      if (is_integer(info.dtype)) {  // read as integers (convert_to_f32 refuses them)
        int64_t sum = 0;
        if (info.dtype == DType::I8) for (int8_t v : i8_values(info)) sum += v;
        if (info.dtype == DType::U8) for (uint8_t v : u8_values(info)) sum += v;
        if (info.dtype == DType::I32 && info.numel() <= 4096) for (int32_t v : i32_values(info)) sum += v;
        (void)sum;
        continue;
      }
      const int64_t count = std::min<int64_t>(info.numel(), 4096);
      std::vector<float> out(static_cast<size_t>(count));
      convert_to_f32(info, 0, count, out.data());
      if (info.numel() > 0) convert_to_f32(info, info.numel() - 1, 1, out.data());
    }
  });
}
