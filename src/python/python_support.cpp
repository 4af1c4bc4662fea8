#include "python/python_support.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>

#include "util/cancel.h"
#include "util/error.h"

namespace cq::python {

namespace {

// Called by library loops on the thread that released the GIL: Python's own SIGINT handler
// only sets a flag, PyErr_CheckSignals runs it (raising KeyboardInterrupt), and the
// error_already_set carries that exception back through the library to the caller.
void check_python_signals() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

// CLI11 messages as `cq` prints them: one line.
std::string one_line(std::string message) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  std::replace(message.begin(), message.end(), '\n', ' ');
  return message;
}

}  // namespace

void register_errors_and_cancellation(py::module_& module) {
  static py::exception<Error> error(module, "Error", PyExc_RuntimeError);
  error.doc() = "A crossquant error: the message is the one `cq` prints after 'cq: error: '.";
  py::register_exception_translator([](std::exception_ptr pointer) {
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    } catch (const CLI::ParseError& e) {
      PyErr_SetString(error.ptr(), one_line(e.what()).c_str());
    }
  });
  set_cancel_check(check_python_signals);
}

py::object to_python(const nlohmann::json& json) { return py::module_::import("json").attr("loads")(json.dump()); }
py::object to_python(const nlohmann::ordered_json& json) { return py::module_::import("json").attr("loads")(json.dump()); }

}  // namespace cq::python
