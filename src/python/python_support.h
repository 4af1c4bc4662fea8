#pragma once
// What every binding of the Python module shares: running library code without the GIL
// and cancellable by Ctrl-C, cq::Error as crossquant.Error, JSON as Python objects.
#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <utility>

namespace cq::python {

namespace py = pybind11;

// Registers crossquant.Error (cq::Error and command-line parse errors, with cq's message)
// and installs the Ctrl-C check (util/cancel.h) that long library loops call.
void register_errors_and_cancellation(py::module_& module);

// Runs `work` with the GIL released, so other Python threads (and the signal handlers the
// cancel check runs) go on meanwhile. Ctrl-C raises KeyboardInterrupt at the next step.
template <typename Work>
auto without_gil(Work&& work) {
  py::gil_scoped_release released;
  return std::forward<Work>(work)();
}

// nlohmann JSON as Python dicts, lists, numbers and strings (through Python's json module,
// whose float parsing round-trips what nlohmann writes).
py::object to_python(const nlohmann::json& json);
py::object to_python(const nlohmann::ordered_json& json);

}  // namespace cq::python
