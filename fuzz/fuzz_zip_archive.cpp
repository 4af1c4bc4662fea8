// Fuzz target: one pytorch_model.bin (a torch.save zip archive). Input: the file's bytes.
// The zip reader lists the entries and reads every stored one (bounded sums, so each byte it
// promised is touched); then the same file is read as a state dict, so tensors' storages and
// extents are checked and each accepted tensor is read at its first and last byte. Last, the
// same file is read as published calibration results (SmoothQuant act_scales, llm-awq results:
// ptq/published_artifacts.h) against a small generated OPT model, which they may transform.
#include <cstdint>

#include "fuzz_common.h"
#include "io/torch_checkpoint.h"
#include "io/zip_archive.h"
#include "model/synthetic.h"
#include "ptq/published_artifacts.h"
#include "ptq/quantized_checkpoint.h"

namespace cq::fuzz {
// Written once per process, outside fresh_dir() (which is emptied for every input).
inline const std::filesystem::path& artifact_model_dir() {
  static const std::filesystem::path dir = [] {
    const auto path = std::filesystem::temp_directory_path() / ("cq-fuzz-model-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    write_synthetic_model("opt-pre", path);
    return path;
  }();
  return dir;
}
}  // namespace cq::fuzz

CQ_FUZZ_TARGET(zip_archive) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(input.data()), input.size());
  expect_only_cq_errors([&] {
    ZipArchive zip(bytes, "fuzz.zip");
    uint64_t sum = 0;
    for (const auto& entry : zip.entries()) {
      expect_only_cq_errors([&] {
        for (std::byte b : zip.data(entry)) sum += static_cast<uint8_t>(b);
      });
    }
    (void)sum;
  });
  const auto dir = fresh_dir();
  write_file(dir / "pytorch_model.bin", input);
  expect_only_cq_errors([&] {
    const LoadedTensors loaded = read_torch_state_dict(dir / "pytorch_model.bin");
    uint64_t sum = 0;
    for (const auto& [name, info] : loaded.tensors)
      if (info.bytes > 0) sum += static_cast<uint8_t>(info.data[0]) + static_cast<uint8_t>(info.data[info.bytes - 1]);
    (void)sum;
  });
  expect_only_cq_errors([&] {
    const Transformer model = load_model(artifact_model_dir());
    (void)read_smoothquant_scales(model, dir / "pytorch_model.bin");
  });
  expect_only_cq_errors([&] {
    Transformer model = load_model(artifact_model_dir());
    (void)apply_awq_results(model, dir / "pytorch_model.bin");
  });
}
