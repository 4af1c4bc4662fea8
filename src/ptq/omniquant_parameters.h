#pragma once
// OmniQuant's learned parameters (Shao et al. 2024, OpenGVLab/OmniQuant), as its code saves
// them in omni_parameters.pth: one dictionary per decoder layer, {parameter name: tensor},
// with the names its quantized layers give them (LET: "qkv_smooth_scale", "out_smooth_shift",
// "qkt_smooth_scale", ...; LWC: "<linear path>.weight_quantizer.upbound_factor" and
// "lowbound_factor"). Both ways in produce this: reading a released file
// (ptq/omniquant.cpp) and calibrating natively (ptq/omniquant_calibration.cpp); applying it
// to a model is ptq/omniquant.cpp's job.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cq {

struct OmniQuantTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};

using OmniQuantLayerParameters = std::map<std::string, OmniQuantTensor>;

struct OmniQuantParameters {
  std::vector<OmniQuantLayerParameters> layers;  // index = decoder layer
};

}  // namespace cq
