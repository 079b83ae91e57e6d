"""What machine a benchmark ran on: CPU model, vector extensions, cores, torch build."""
from __future__ import annotations

import os
import platform

import torch

VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "amx_bf16", "amx_int8", "amx_tile", "asimd", "sve")


def cpu_description() -> str:
    """One line: CPU model, vector extensions present, logical cores, torch threads."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", "unknown CPU", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    present = [f for f in VECTOR_FLAGS if f in flags]
    return (f"{model} | vector: {' '.join(present) or 'n/a'} | {os.cpu_count()} logical cores | "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def gpu_description() -> str:
    """The CUDA device name, or 'no GPU'."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """Print a fixed-width table with the machine line above it."""
    print(f"\n## {title}\n{cpu_description()} | {gpu_description()}\n")
    cells = [header] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if j == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
