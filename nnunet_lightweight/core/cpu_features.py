"""What this CPU can do: its model name, the instruction-set flags that matter for speed, and bf16 support.

CPUs differ between the machines this project runs on (some have AVX-512 with bf16 instructions, some only AVX2),
so fast paths are chosen from what is detected here, never assumed, and every timing prints `describe_cpu()`.
"""

import functools
import os
import platform

import torch

# Flags that decide which kernels oneDNN can use; /proc/cpuinfo spells them like this.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor's block is enough: all cores of one machine are alike
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name (e.g. 'AMD EPYC'), or the platform's processor string where /proc is absent."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The speed-relevant instruction-set flags this CPU reports (a subset of SPEED_FLAGS, in that order)."""
    reported = set(_cpuinfo().get("flags", "").split())
    return [flag for flag in SPEED_FLAGS if flag in reported]


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether bf16 arithmetic is native here: bf16 instructions (AVX512-BF16 or AMX) that torch's oneDNN uses.

    Without them oneDNN emulates bf16 with fp32 conversions, which is slower than fp32 itself.
    """
    native = any(flag in cpu_flags() for flag in ("avx512_bf16", "amx_bf16"))
    return native and bool(torch.backends.mkldnn.is_available()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def describe_cpu() -> str:
    """One line for logs and benchmark output: model, cores torch uses, flags, whether bf16 is native, and the
    instruction set torch's own kernels use, with oneDNN's cap where one is set (`ONEDNN_MAX_CPU_ISA` and
    `ATEN_CPU_CAPABILITY` make an AVX-512 machine time its AVX2 kernels; the flags are still the CPU's)."""
    flags = " ".join(cpu_flags()) or "none of " + " ".join(SPEED_FLAGS)
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (
        f"{cpu_model()}, {torch.get_num_threads()} torch threads, flags: {flags}, "
        f"bf16 {'native' if cpu_has_bf16() else 'not native'}, ATen kernels {torch.backends.cpu.get_cpu_capability()}"
        + (f", oneDNN capped at {onednn_cap}" if onednn_cap else "")
    )
