#pragma once
// The parts of the module crossquant, one file each (module.cpp puts them together).
#include <pybind11/pybind11.h>

namespace cq::python {

void bind_quantizers(pybind11::module_& module);  // bind_quantizers.cpp
void bind_model(pybind11::module_& module);       // bind_model.cpp

}  // namespace cq::python
