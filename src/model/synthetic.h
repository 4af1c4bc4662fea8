#pragma once
// Generated models in Hugging Face layout (config.json + safetensors) with deterministic
// weights, for tests, benchmarks and `make run`. We ship no third-party weights.
#include <filesystem>
#include <string>
#include <vector>

namespace cq {

// Names of the presets (`cq synth --list`).
std::vector<std::string> synthetic_presets();
// Writes the preset's config.json and weights into `out_dir` (created if needed).
// Throws cq::Error for an unknown preset.
void write_synthetic_model(const std::string& preset, const std::filesystem::path& out_dir);

}  // namespace cq
