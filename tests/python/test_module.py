#!/usr/bin/env python3
"""Tests of the Python module `crossquant` (docs/PYTHON.md), run by ctest (Python.Quantizers,
Python.Models) with Debian's python3 and PYTHONPATH at the build's python/ folder.

The module's numbers are compared with the independent PyTorch references in tests/golden/
(quantizers: tests/reference/quant_reference.py; perplexity and greedy ids:
tests/reference/make_golden_ppl.py) and with `cq`'s own outputs for the same settings
(CQ_BIN), and its errors with cq's messages. Model tests use $CQ_SHARED's models; without
them they skip, or fail when CQ_REQUIRE_SHARED=1.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np

import crossquant as cq

SOURCE = pathlib.Path(os.environ.get("CQ_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
CQ_BIN = os.environ.get("CQ_BIN", str(SOURCE / "build" / "cq"))
SHARED = pathlib.Path(os.environ.get("CQ_SHARED", SOURCE.parent / "shared"))
GOLDEN = SOURCE / "tests" / "golden"
MODEL = SHARED / "models" / "stories260k"
TEXT = SHARED / "data" / "tinystories" / "TinyStories-valid.first100.txt"
HAVE_SHARED = MODEL.is_dir() and TEXT.is_file()
if not HAVE_SHARED and os.environ.get("CQ_REQUIRE_SHARED") == "1":
    sys.exit(f"test_module: CQ_REQUIRE_SHARED=1 but {MODEL} or {TEXT} is missing")
needs_shared = unittest.skipUnless(HAVE_SHARED, f"shared assets not found under {SHARED} (set CQ_SHARED)")

cq.set_progress(False)
cq.set_threads(1)  # the CLI runs below use --threads 1 too: identical sums, identical numbers


def run_cq(*arguments, expect_ok=True):
    result = subprocess.run([CQ_BIN, *arguments], capture_output=True, text=True)
    if expect_ok and result.returncode != 0:
        raise AssertionError(f"cq {' '.join(arguments)} failed: {result.stderr}")
    return result


def cq_error(*arguments):
    """The message cq prints after 'cq: error: ' for a failing command line."""
    result = run_cq(*arguments, expect_ok=False)
    assert result.returncode != 0, arguments
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("cq: error: "), line
    return line[len("cq: error: "):]


def read_f32(name, rows, cols):
    return np.fromfile(GOLDEN / "quant" / name, dtype="<f4").reshape(rows, cols)


class Quantizers(unittest.TestCase):
    """Every case of the PyTorch quantizer reference, through the module's keyword options."""

    @classmethod
    def setUpClass(cls):
        cls.manifest = json.loads((GOLDEN / "quant" / "manifest.json").read_text())
        cls.inputs = {name: read_f32(spec["file"], spec["rows"], spec["cols"])
                      for name, spec in cls.manifest["inputs"].items()}

    def keywords(self, case):
        keywords = {"method": case["method"], "bits": case["bits"]}
        for key in ("alpha", "group_size", "asymmetric", "kernel_target"):
            if key in case:
                keywords[key] = case[key]
        if "static_column_absmax" in case:
            keywords["column_absmax"] = self.inputs[case["static_column_absmax"]].ravel()
        return keywords

    def test_methods_are_the_method_table(self):
        table = (SOURCE / "src" / "quant" / "method_table.cpp").read_text()
        rows = re.findall(r'QuantMethod\{\.name = "([^"]+)"', table)
        self.assertEqual([m["name"] for m in cq.methods()], rows)
        by_name = {m["name"]: m for m in cq.methods()}
        self.assertEqual(by_name["crossquant"]["options"], ["alpha", "column_absmax"])
        self.assertEqual(by_name["group"]["options"], ["group_size", "asymmetric"])
        self.assertEqual(by_name["remove-kernel"]["options"], ["kernel_target"])
        self.assertTrue(by_name["per-token"]["activations"] and not by_name["per-token"]["weights"])

    def test_every_reference_case(self):
        cases = self.manifest["cases"]
        self.assertEqual({c["method"] for c in cases}, {m["name"] for m in cq.methods()})
        tie_flips = 0
        for case in cases:
            with self.subTest(case=case["name"]):
                x = self.inputs[case["input"]].copy()
                expected = np.fromfile(GOLDEN / "quant" / case["output"], dtype="<f4").reshape(x.shape)
                actual = cq.fake_quantize(x, **self.keywords(case))
                np.testing.assert_array_equal(x, self.inputs[case["input"]], "fake_quantize modified its input")
                # Equal up to float rounding, except rare elements at a .5 tie (one code apart),
                # as tests/unit/test_quant_golden.cpp bounds them.
                close = np.isclose(actual, expected, rtol=2e-6, atol=0)
                flips = int((~close).sum())
                self.assertLessEqual(flips, max(1, x.size // 1000), f"{flips} elements differ")
                tie_flips += flips
                stats = cq.kernel_stats(x, **self.keywords(case))
                for key, value in case["stats"].items():
                    self.assertLessEqual(abs(stats[key] - value), flips, key)
                if "codes" not in case:  # remove-kernel: no integer codes
                    with self.assertRaisesRegex(cq.Error, "has no integer codes"):
                        cq.quantize(x, **self.keywords(case))
                    continue
                quantized = cq.quantize(x, **self.keywords(case))
                codes = np.fromfile(GOLDEN / "quant" / case["codes"], dtype=case["codes_type"]).reshape(x.shape)
                self.assertEqual(quantized["codes"].dtype, np.dtype(case["codes_type"]))
                self.assertLessEqual(int((quantized["codes"].astype(int) != codes).sum()), flips)
                np.testing.assert_array_equal(quantized["dequantized"], actual)
                self.assertEqual(quantized["stats"], stats)
                if "row_scales" in case:
                    np.testing.assert_allclose(quantized["row_scales"],
                                               np.fromfile(GOLDEN / "quant" / case["row_scales"], "<f4"), rtol=3e-7)
                    np.testing.assert_allclose(quantized["column_factors"],
                                               np.fromfile(GOLDEN / "quant" / case["column_factors"], "<f4"), rtol=3e-7)
        self.assertLess(tie_flips, 20)

    def test_figure3_codes_by_hand(self):
        # SPEC.md's Figure 3 at α = 0.15, 8 bits: the small entries of column 0 keep non-zero codes.
        x = self.inputs["fig3"]
        per_token = cq.quantize(x, method="per-token")["codes"]
        crossquant = cq.quantize(x, method="crossquant", alpha=0.15)["codes"]
        self.assertEqual(list(per_token[:, 0]), [0, 0, 0, 0])
        self.assertTrue(np.all(crossquant[[0, 1, 2], 0] != 0))

    def test_options_a_method_does_not_read_are_errors(self):
        x = self.inputs["act_a"]
        with self.assertRaisesRegex(cq.Error, r"^method 'per-token' does not read alpha \(it applies to crossquant\)$"):
            cq.fake_quantize(x, method="per-token", alpha=0.3)
        with self.assertRaisesRegex(cq.Error, r"does not read group_size \(it applies to group\)"):
            cq.quantize(x, method="crossquant", group_size=64)
        with self.assertRaisesRegex(cq.Error, r"does not read kernel_target"):
            cq.kernel_stats(x, method="group", kernel_target=0.1)

    def test_library_errors_keep_cqs_message(self):
        x = self.inputs["act_a"].copy()
        with self.assertRaisesRegex(cq.Error, r"^unknown quantization method 'per-tokn' \(per-tensor, per-token, "):
            cq.fake_quantize(x, method="per-tokn")
        x[3, 4] = np.nan
        with self.assertRaisesRegex(cq.Error, r"^quantizer crossquant: input row 3 holds NaN or Inf$"):
            cq.fake_quantize(x, method="crossquant")
        self.assertTrue(issubclass(cq.Error, RuntimeError))
        with self.assertRaisesRegex(cq.Error, "2-D matrix"):
            cq.fake_quantize(np.zeros(5, np.float32))
        with self.assertRaisesRegex(cq.Error, "column_absmax has 3 values, the matrix 168 columns"):
            cq.fake_quantize(self.inputs["act_a"], column_absmax=np.ones(3, np.float32))

    def test_layouts_without_copy(self):
        x = self.inputs["act_a"]
        wide = np.zeros((x.shape[0], x.shape[1] + 40), np.float32)
        wide[:, :x.shape[1]] = x
        view = wide[:, :x.shape[1]]  # rows contiguous, row stride larger than the row: used in place
        expected = cq.fake_quantize(x, method="crossquant")
        self.assertIs(cq.fake_quantize(view, method="crossquant", inplace=True), view)
        np.testing.assert_array_equal(wide[:, :x.shape[1]], expected)
        np.testing.assert_array_equal(wide[:, x.shape[1]:], 0)
        # Other layouts and dtypes are converted (a copy), which inplace=True refuses.
        np.testing.assert_array_equal(cq.fake_quantize(np.asfortranarray(x), method="crossquant"), expected)
        np.testing.assert_array_equal(cq.fake_quantize(x.astype(np.float64), method="crossquant"), expected)
        with self.assertRaisesRegex(cq.Error, "inplace=True needs a float32 matrix"):
            cq.fake_quantize(x.astype(np.float64), inplace=True)

    def test_torch_tensors(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed")
        x = self.inputs["act_a"]
        tensor = torch.from_numpy(x.copy())
        expected = cq.fake_quantize(x, method="per-token", bits=4)
        np.testing.assert_array_equal(cq.fake_quantize(tensor, method="per-token", bits=4), expected)
        cq.fake_quantize(tensor, method="per-token", bits=4, inplace=True)  # writes the tensor's memory
        np.testing.assert_array_equal(tensor.numpy(), expected)
        codes = cq.quantize(torch.from_numpy(x).t().contiguous().t(), method="per-token")["codes"]  # column-major: copied
        np.testing.assert_array_equal(codes, cq.quantize(x, method="per-token")["codes"])


@needs_shared
class Models(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = cq.Model(str(MODEL))
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def cli_json(self, command, *arguments):
        out = pathlib.Path(self.tmp.name) / f"{command}.json"
        run_cq(command, "--model", str(MODEL), *arguments, "--threads", "1", "--quiet", "--json", str(out))
        return json.loads(out.read_text())

    def test_info(self):
        info = self.model.info()
        self.assertEqual((info["family"], info["quantization"]), ("llama", None))
        self.assertEqual(self.model.decode(self.model.encode("Hello world")[1:]), "Hello world")

    def test_perplexity_equals_the_cli(self):
        for flags, keywords in ((["--scheme", "w8a8"], {"scheme": "w8a8"}),
                                (["--scheme", "w4a8-g128", "--act-quant", "per-token", "--weight-asymmetric"],
                                 {"scheme": "w4a8-g128", "act_quant": "per-token", "weight_asymmetric": True}),
                                (["--abits", "6", "--alpha", "0.45"], {"abits": 6, "alpha": 0.45})):
            with self.subTest(flags=flags):
                cli = self.cli_json("ppl", "--text", str(TEXT), "--seqlen", "128", "--max-windows", "6", *flags)
                mine = self.model.perplexity(text_file=str(TEXT), seqlen=128, max_windows=6, **keywords)
                self.assertEqual(mine["window_nll"], cli["window_nll"])
                self.assertEqual(mine["perplexity"], cli["perplexity"])
                self.assertEqual(mine["quantization"], cli["quantization"])
                self.assertEqual(mine["kernel"], cli["kernel"])

    def test_perplexity_equals_the_pytorch_reference(self):
        golden = json.loads((GOLDEN / "ppl" / "stories260k_tinystories_256.json").read_text())["settings"]
        text = TEXT.read_text()
        fp32 = self.model.perplexity(text=text, seqlen=256)
        self.assertEqual(fp32["windows"], 135)
        self.assertAlmostEqual(fp32["perplexity"] / golden["fp32"]["ppl"], 1.0, delta=1e-5)
        w8a8 = self.model.perplexity(text=text, seqlen=256, scheme="w8a8", alpha=0.15)
        reference = golden["w8a8_crossquant_a0.15"]
        self.assertAlmostEqual(w8a8["perplexity"] / reference["ppl"], 1.0, delta=1e-3)
        # Kernel tolerances of tests/unit/test_ppl_golden.cpp for W8 (total 2e-4, per layer 5e-4).
        self.assertAlmostEqual(w8a8["kernel"]["total"]["kernel_fraction"], reference["kernel"]["kernel_proportion"],
                               delta=2e-4)
        layers = {layer["layer"]: layer["kernel_fraction"] for layer in w8a8["kernel"]["layers"]}
        self.assertEqual(set(layers), set(reference["kernel"]["per_layer"]))
        for name, expected in reference["kernel"]["per_layer"].items():
            self.assertAlmostEqual(layers[name], expected["kernel_proportion"], delta=5e-4, msg=name)

    def test_kernel_equals_the_cli(self):
        cli = self.cli_json("kernel", "--text", str(TEXT), "--seqlen", "128", "--max-windows", "4",
                            "--act-quant", "per-token")["results"][0]
        mine = self.model.kernel(text_file=str(TEXT), seqlen=128, max_windows=4, act_quant="per-token")
        self.assertEqual(mine, cli)

    def test_quantization_errors_are_the_clis(self):
        common = ["ppl", "--model", str(MODEL), "--text", str(TEXT), "--max-windows", "1"]
        for flags, keywords in ((["--act-quant", "per-token", "--alpha", "0.3"], {"act_quant": "per-token", "alpha": 0.3}),
                                (["--act-quant", "bogus"], {"act_quant": "bogus"}),
                                (["--calib-samples", "0"], {"calib_samples": 0}),
                                (["--scheme", "w3a3"], {"scheme": "w3a3"}),
                                (["--weight-asymmetric"], {"weight_asymmetric": True}),
                                (["--engine", "gpu"], {"engine": "gpu"})):
            with self.subTest(flags=flags):
                expected = cq_error(*common, *flags)
                with self.assertRaises(cq.Error) as raised:
                    self.model.perplexity(text_file=str(TEXT), max_windows=1, **keywords)
                self.assertEqual(str(raised.exception), expected)
        with self.assertRaisesRegex(cq.Error, r"unknown keyword argument 'alhpa' \(did you mean alpha\?\)"):
            self.model.perplexity(text_file=str(TEXT), alhpa=0.3)
        with self.assertRaisesRegex(cq.Error, "weight_asymmetric: expects True or False"):
            self.model.perplexity(text_file=str(TEXT), weight_asymmetric="yes")
        with self.assertRaisesRegex(cq.Error, "give text"):
            self.model.perplexity()
        with self.assertRaisesRegex(cq.Error, "missing|not found|No such|does not exist|cannot"):
            cq.Model(str(MODEL / "nonexistent"))

    def test_generate_equals_the_reference_and_the_cli(self):
        golden = json.loads((GOLDEN / "ppl" / "greedy_stories260k.json").read_text())
        mine = self.model.generate(golden["prompt"], tokens=golden["new_tokens"])
        self.assertEqual(mine["ids"], golden["generated_ids"][:len(mine["ids"])])
        cli = run_cq("generate", "--model", str(MODEL), "--prompt", "Once upon a time", "-n", "20", "--ids",
                     "--temperature", "0.8", "--seed", "7", "--scheme", "w8a8", "--threads", "1").stdout.splitlines()
        sampled = self.model.generate("Once upon a time", tokens=20, temperature=0.8, seed=7, scheme="w8a8")
        self.assertEqual("ids: " + " ".join(map(str, sampled["ids"])), cli[-1])
        self.assertEqual(sampled["text"], "\n".join(cli[:-1]))

    def test_evaluate_equals_the_cli(self):
        data = SHARED / "data"
        cli = self.cli_json("eval", "--tasks", "arc_easy", "--data-dir", str(data), "--limit", "12", "--act-quant",
                            "per-token", "--scheme", "w8a8")
        mine = self.model.evaluate(["arc_easy"], data_dir=str(data), limit=12, scheme="w8a8", act_quant="per-token")
        metrics = mine["results"]["arc_easy"]["metrics"]
        self.assertEqual(metrics["docs"], 12)
        for metric in ("acc", "acc_norm"):
            self.assertEqual(metrics[metric], cli["results"]["arc_easy"][f"{metric},none"])
            self.assertEqual(metrics[f"{metric}_stderr"], cli["results"]["arc_easy"][f"{metric}_stderr,none"])
        with self.assertRaisesRegex(cq.Error, "num_fewshot 0 changes nothing"):
            self.model.evaluate(["arc_easy"], data_dir=str(data), num_fewshot=0)

    def test_quantized_checkpoint(self):
        out = pathlib.Path(self.tmp.name) / "w8a8"
        self.assertIn("W8", self.model.quantize(str(out), scheme="w8a8"))
        stored = cq.Model(str(out))
        self.assertIsNotNone(stored.info()["quantization"])
        on_the_fly = self.model.perplexity(text_file=str(TEXT), seqlen=128, max_windows=4, scheme="w8a8")
        loaded = stored.perplexity(text_file=str(TEXT), seqlen=128, max_windows=4)
        self.assertEqual(loaded["perplexity"], on_the_fly["perplexity"])
        cli = run_cq("ppl", "--model", str(out), "--text", str(TEXT), "--seqlen", "128", "--max-windows", "4",
                     "--threads", "1", "--quiet").stdout
        self.assertEqual(cli.strip(), f"perplexity: {loaded['perplexity']:.4f}")
        with self.assertRaisesRegex(cq.Error, "already a quantized checkpoint"):
            stored.quantize(str(pathlib.Path(self.tmp.name) / "again"), scheme="w8a8")

    def test_ctrl_c_interrupts_a_long_call_that_released_the_gil(self):
        # A timer thread sends SIGINT while the main thread is inside a long perplexity: the
        # thread runs only if the call released the GIL, and the call must end at once with
        # KeyboardInterrupt (the full run takes far longer than the bound).
        child = textwrap.dedent(f"""
            import os, signal, threading, time
            import crossquant as cq
            cq.set_progress(False)
            cq.set_threads(1)
            model = cq.Model({str(MODEL)!r})
            text = open({str(TEXT)!r}).read() * 40
            threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            start = time.monotonic()
            try:
                model.perplexity(text=text, seqlen=64)
                print("completed", time.monotonic() - start)
            except KeyboardInterrupt:
                print("interrupted", time.monotonic() - start)
            """)
        result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        outcome, seconds = result.stdout.split()
        self.assertEqual(outcome, "interrupted", result.stdout)
        self.assertLess(float(seconds), 10.0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
