#!/usr/bin/env python3
"""Checks the include directions of src/ (docs/ARCHITECTURE.md): a file includes only from
its own folder or from folders of a lower layer, so no folder depends on one above it and
folders have no include cycles. Also: the model knows quantizers only through their
interface, and only kernels/ calls oneDNN. Prints every violation; exit 1 if any.

Usage: check_layers.py [SRC_DIR]   (default: the src/ beside this script's folder)
"""
import pathlib
import re
import sys

# Layer of each folder, bottom first. Folders of one layer do not include each other.
LAYERS = {
    "util": 0,
    "io": 1, "tokenizer": 1, "kernels": 1,
    "quant": 2,
    "model": 3,
    "ptq": 4,
    "eval": 5,
    "cli": 6,
    "python": 7,  # the Python module (a front end beside cli/, which it reuses for the quantization flags)
}
# What the model may see of the quantization layer: the interface, not any method or format.
MODEL_MAY_INCLUDE_FROM_QUANT = {"quant/quantizer.h", "quant/kernel_stats.h"}
# Third-party headers that belong to one folder only.
PRIVATE_LIBRARIES = {"oneapi/dnnl/": {"kernels"}}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)


def violations(src: pathlib.Path):
    found = []
    for path in sorted(src.rglob("*")):
        if path.suffix not in (".h", ".cpp", ".inc") or not path.is_file():
            continue
        folder = path.relative_to(src).parts[0]
        if folder not in LAYERS:
            found.append(f"{path}: folder '{folder}' has no layer (add it to LAYERS in {__file__})")
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in INCLUDE.finditer(text):
            kind, header = match.groups()
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path}:{line}"
            if kind == "<":
                for prefix, owners in PRIVATE_LIBRARIES.items():
                    if header.startswith(prefix) and folder not in owners:
                        found.append(f"{where}: <{header}> is used only in {', '.join(sorted(owners))}/")
                continue
            target = header.split("/")[0]
            if "/" not in header or target not in LAYERS:
                continue  # a header of the same folder or a third-party one in quotes
            if target == folder:
                continue
            if LAYERS[target] >= LAYERS[folder]:
                relation = "the same layer" if LAYERS[target] == LAYERS[folder] else "a layer above"
                found.append(f"{where}: {folder}/ includes \"{header}\" from {relation} ({target}/)")
            elif folder == "model" and target == "quant" and header not in MODEL_MAY_INCLUDE_FROM_QUANT:
                found.append(f"{where}: model/ includes \"{header}\"; it may see only "
                             f"{', '.join(sorted(MODEL_MAY_INCLUDE_FROM_QUANT))} of quant/")
    return found


def main() -> int:
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent / "src"
    if not src.is_dir():
        print(f"check_layers: {src} is not a directory", file=sys.stderr)
        return 2
    found = violations(src)
    for line in found:
        print(line)
    if found:
        print(f"check_layers: {len(found)} include(s) against the layer order (docs/ARCHITECTURE.md)")
        return 1
    print(f"check_layers: {src}: every include follows the layer order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
