#!/usr/bin/env python3
"""ssm-scope's PyTorch / Hugging Face worker: the peer backend ``torch`` and the golden-fixture generator.

ssm-scope ships this file inside its binary and runs it as one process per run (``python3 THIS_FILE``). It is
stdlib-only at import time; torch, transformers and safetensors are imported when a request needs them, so that
a Python without them still answers ``hello`` and names what is missing.

Protocol (version 1): JSON lines. Every request is one JSON object on one line of standard input; every reply
is one JSON object on one line of standard output, in order. Anything else the process prints goes to standard
error (standard output is reserved for replies). The worker exits at end of input, or once its parent is gone.

    {"op": "hello", "protocol": 1}
      -> {"ok": true, "protocol": 1, "python": "3.11.7", "executable": "/usr/bin/python3",
          "torch": "2.11.0" | null, "torch_error": null | "why torch did not import",
          "transformers": "5.2.0" | null, "cuda": "12.8" | null, "device": "NVIDIA H100 ..." | "cpu" | null,
          "kernels": {"mamba_ssm": bool, "causal_conv1d": bool, "flash_attn": bool}}
    {"op": "measure", "point": {PointConfig}, "settings": {ProtocolSettings}, "config": {config.json},
     "memoryLimit": bytes | null}
      -> {"ok": true, "result": {PointResult, keys exactly as Swift's Codable writes them}}
    {"op": "fixtures", "out": DIR, "only": [family, ...], "check": bool, "independent": bool,
     "print_tensors": bool}
      -> {"ok": true, "exit_status": 0 | 1, "built": [family, ...], "failed": [{"name": ..., "error": ...}]}
    {"op": "test_hang"}   (only when SSM_SCOPE_WORKER_TEST=1: writes a line to stderr, then sleeps forever)

A request that fails answers {"ok": false, "error": "one line", "out_of_memory": bool}.

Run from a shell, ``python3 ssm_scope_worker.py fixtures [--out DIR] [--only F ...] [--check] [--independent]
[--print-tensors]`` regenerates or verifies the golden fixtures (tools/reference/README.md), and
``python3 ssm_scope_worker.py`` with no arguments serves the protocol.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import io
import json
import logging
import math
import os
import platform
import re
import resource
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

PROTOCOL = 1

# Imported on first use (see require_torch / require_safetensors).
torch = None
F = None
transformers = None
AutoConfig = None
AutoModelForCausalLM = None
safetensors = None
safe_open = None
load_file = None
REF_DT = None


class WorkerError(Exception):
    """A failure meant for a person: one line naming what is wrong and the fix."""

    def __init__(self, message: str, out_of_memory: bool = False):
        super().__init__(message)
        self.out_of_memory = out_of_memory


def one_line(error: BaseException) -> str:
    """'Type: first line of the message', at most 300 characters (the traceback goes to stderr)."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def install_hint(*packages: str) -> str:
    return f"'{sys.executable} -m pip install {' '.join(packages)}'"


def require_torch() -> None:
    """Imports torch and transformers into the module globals, or names what is missing and how to install it."""
    global torch, F, transformers, AutoConfig, AutoModelForCausalLM, REF_DT
    if AutoModelForCausalLM is not None:
        return
    try:
        import torch as torch_module
        import torch.nn.functional as functional
    except ImportError as error:
        raise WorkerError(f"torch is not importable by {sys.executable} ({error}): install it with "
                          f"{install_hint('torch', 'transformers')}") from None
    try:
        import transformers as transformers_module
        from transformers import AutoConfig as auto_config, AutoModelForCausalLM as auto_model
        from transformers.utils import logging as hf_logging
    except ImportError as error:
        raise WorkerError(f"transformers is not importable by {sys.executable} ({error}): install it with "
                          f"{install_hint('transformers')}") from None
    hf_logging.disable_progress_bar()
    torch, F, transformers = torch_module, functional, transformers_module
    AutoConfig, AutoModelForCausalLM = auto_config, auto_model
    REF_DT = torch.float64


def require_safetensors() -> None:
    """Imports safetensors (the fixtures need it; measuring does not)."""
    global safetensors, safe_open, load_file
    if load_file is not None:
        return
    try:
        import safetensors as safetensors_module
        from safetensors import safe_open as open_file
        from safetensors.torch import load_file as load
    except ImportError as error:
        raise WorkerError(f"safetensors is not importable by {sys.executable} ({error}): install it with "
                          f"{install_hint('safetensors')}") from None
    safetensors, safe_open, load_file = safetensors_module, open_file, load


# --------------------------------------------------------------------------------------------
# hello
# --------------------------------------------------------------------------------------------

KERNEL_MODULES = ("mamba_ssm", "causal_conv1d", "flash_attn")


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - a kernel package that fails to import for any reason is not usable
        return False


def environment() -> dict:
    """What this Python has: versions, the device, and which fused kernels import."""
    info = {"python": platform.python_version(), "executable": sys.executable, "torch": None, "torch_error": None,
            "transformers": None, "cuda": None, "device": None,
            "kernels": {name: False for name in KERNEL_MODULES}}
    try:
        import torch as torch_module
    except Exception as error:  # noqa: BLE001 - report any import failure (missing, broken CUDA libraries)
        info["torch_error"] = one_line(error)
        return info
    info["torch"] = torch_module.__version__
    if torch_module.cuda.is_available():
        info["cuda"] = torch_module.version.cuda
        info["device"] = torch_module.cuda.get_device_name(0)
    else:
        info["device"] = "cpu"
    try:
        from importlib import metadata
        info["transformers"] = metadata.version("transformers")
    except Exception:  # noqa: BLE001 - not installed
        pass
    info["kernels"] = {name: importable(name) for name in KERNEL_MODULES}
    return info


# --------------------------------------------------------------------------------------------
# Operator breakdown: torch.profiler events mapped onto ssm-scope's OperatorKind raw values
# --------------------------------------------------------------------------------------------

SCOPE_PREFIX = "ssm_scope::"
GEMM_OPS = ("linear", "mm", "addmm", "matmul", "bmm", "baddbmm", "einsum", "_grouped_mm", "addmv", "mv", "gemm")
ADD_OPS = ("add", "add_", "sub", "sub_")
NORM_WORDS = ("rms_norm", "rmsnorm", "layer_norm", "layernorm", "group_norm")
SCAN_WORDS = ("chunk_scan", "chunk_state", "state_passing", "bmm_chunk", "ssd", "mamba")
ATTENTION_WORDS = ("scaled_dot_product", "flash", "attention", "softmax", "sdpa")


def base_name(op: str) -> str:
    """'aten::addmm' -> 'addmm'."""
    return op.rsplit("::", 1)[-1].lower()


def op_kind(op: str | None, scopes: list[str], phase: str) -> str:
    """The ssm-scope OperatorKind raw value that a profiled op's time counts towards.

    ``op`` is the outermost op under the innermost module scope (e.g. 'aten::linear', not its 'aten::addmm'), or
    None for time spent in a scope itself. ``scopes`` are the module scopes around it, innermost first (labels of
    ``module_scope``). ``phase`` is 'prefill' or 'decode'.
    """
    decode = phase == "decode"
    inner = scopes[0] if scopes else None
    name = base_name(op or "")
    if "lm_head" in scopes:
        return "lm_head"
    if inner in ("embedding", "linear", "router", "rope", "rms_norm", "gated_rms_norm"):
        return inner
    if inner == "conv1d" or "conv1d" in name or name in ("convolution", "_convolution"):
        return "conv_step" if decode else "conv1d"
    if inner == "ssm1":
        return "selective_step" if decode else "selective_scan"
    if inner == "ssm2":
        return "ssd_step" if decode else "ssd_chunk_scan"
    if inner == "attention":
        return "attention_decode" if decode else "attention_prefill"
    if "selective_scan" in name or "selective_state_update" in name:
        return "selective_step" if decode else "selective_scan"
    if any(word in name for word in SCAN_WORDS):
        return "ssd_step" if decode else "ssd_chunk_scan"
    if any(word in name for word in ATTENTION_WORDS):
        return "attention_decode" if decode else "attention_prefill"
    if name in GEMM_OPS:
        return "linear"
    if any(word in name for word in NORM_WORDS):
        return "rms_norm"
    if "embedding" in name:
        return "embedding"
    if inner == "mlp":
        return "activation"
    if name in ADD_OPS:
        return "residual_add"
    if name == "cat":
        return "concat"
    return "activation"


def module_scope(leaf: str, module, parent_class: str) -> str | None:
    """The scope label of a module (what its time is), or None when it adds nothing to its parent's."""
    cls = type(module).__name__
    if leaf == "lm_head":
        return "lm_head"
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if isinstance(module, torch.nn.Linear):
        moe = "moe" in parent_class.lower() or "expert" in parent_class.lower()
        return "router" if leaf == "router" or (leaf == "gate" and moe) else "linear"
    if isinstance(module, torch.nn.Conv1d):
        return "conv1d"
    if "Rotary" in cls:
        return "rope"
    if "Norm" in cls:
        return "gated_rms_norm" if "Gated" in cls else "rms_norm"
    a_log = getattr(module, "A_log", None)
    if isinstance(a_log, torch.Tensor):
        return "ssm2" if a_log.dim() == 1 else "ssm1"
    if "Attention" in cls and "Layer" not in cls and "Block" not in cls:  # not e.g. JambaAttentionDecoderLayer
        return "attention"
    if any(word in cls.lower() for word in ("mlp", "feedforward", "expert", "moe")):
        return "mlp"
    return None


class ProfilerScopes:
    """While active, every module that has a scope label runs inside a profiler range named after it."""

    def __init__(self, model):
        self.model = model
        self.handles = []
        self.open = []

    def __enter__(self):
        classes = {"": ""}
        for name, module in self.model.named_modules():
            classes[name] = type(module).__name__
            if not name:
                continue
            parent, _, leaf = name.rpartition(".")
            label = module_scope(leaf, module, classes.get(parent, ""))
            if label is not None:
                self.handles.append(module.register_forward_pre_hook(self.enter(label)))
                self.handles.append(module.register_forward_hook(self.exit))
        return self

    def enter(self, label: str):
        def hook(module, args):
            scope = torch.profiler.record_function(SCOPE_PREFIX + label)
            scope.__enter__()
            self.open.append(scope)
        return hook

    def exit(self, module, args, output):
        self.open.pop().__exit__(None, None, None)

    def __exit__(self, *exc):
        while self.open:
            self.open.pop().__exit__(None, None, None)
        for handle in self.handles:
            handle.remove()
        return False


def breakdown(events, phase: str, on_device: bool) -> dict:
    """Seconds by OperatorKind raw value: each CPU-side event's self time (on a GPU: the kernel time it launched)."""
    cpu = torch.autograd.DeviceType.CPU
    totals: dict[str, float] = {}
    for event in events:
        if getattr(event, "is_async", False) or getattr(event, "device_type", cpu) != cpu:
            continue
        if on_device:
            micros = getattr(event, "self_device_time_total", None)
            if micros is None:
                micros = event.self_cuda_time_total
        else:
            micros = event.self_cpu_time_total
        if micros <= 0:
            continue
        scopes, op, node = [], None, event
        while node is not None:
            if node.name.startswith(SCOPE_PREFIX):
                scopes.append(node.name[len(SCOPE_PREFIX):])
            elif not scopes:
                op = node.name
            node = node.cpu_parent
        kind = op_kind(op, scopes, phase)
        totals[kind] = totals.get(kind, 0.0) + micros * 1e-6
    return totals


# --------------------------------------------------------------------------------------------
# measure: one point of the protocol on a Hugging Face model
# --------------------------------------------------------------------------------------------

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class FallbackLog(logging.Handler):
    """Collects what transformers warns ran without its fused kernel (the function it names, else the warning)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        text = record.getMessage()
        if re.search(r"fall(ing)? ?back|fast path is not available|naive implementation", text, re.IGNORECASE):
            named = re.search(r"`([^`]+)`", text)
            what = named.group(1) if named else text.strip().splitlines()[0][:100]
            if what not in self.messages:
                self.messages.append(what)


class LoadedModel:
    """A Hugging Face model built from a config with seeded random weights, and how to call it."""

    def __init__(self, config: dict, dtype: str, device: str, seed: int, model_name: str):
        model_type = config.get("model_type")
        if not isinstance(model_type, str):
            raise WorkerError(f"{model_name}: config.json has no model_type")
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
        if model_type not in CONFIG_MAPPING:
            raise WorkerError(f"transformers {transformers.__version__} has no '{model_type}' models (needed by "
                              f"{model_name}): upgrade it with {install_hint('-U', 'transformers')}")
        fields = {k: v for k, v in config.items() if k != "model_type"}
        hf_config = AutoConfig.for_model(model_type, **fields)
        self.fallbacks = FallbackLog()
        logging.getLogger("transformers").addHandler(self.fallbacks)
        torch.manual_seed(seed)
        torch_dtype = getattr(torch, DTYPES[dtype])
        release = tuple(int(part) for part in re.findall(r"\d+", transformers.__version__)[:2])
        dtype_keyword = "dtype" if release >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
        with torch.device(device):
            self.model = AutoModelForCausalLM.from_config(hf_config, **{dtype_keyword: torch_dtype}).eval()
        self.device = device
        self.vocab = self.model.config.vocab_size
        parameters = set(inspect.signature(self.model.forward).parameters)
        self.cache_keyword = "past_key_values" if "past_key_values" in parameters else "cache_params"
        self.keep_keyword = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in parameters), None)
        self.passes_position = "cache_position" in parameters
        self.has_ssm = any(isinstance(getattr(m, "A_log", None), torch.Tensor) for m in self.model.modules())
        self.has_attention = any("Attention" in type(m).__name__ for m in self.model.modules())
        self.attention = getattr(self.model.config, "_attn_implementation", None) or "eager"
        self.weight_bytes = sum(t.numel() * t.element_size()
                                for t in list(self.model.parameters()) + list(self.model.buffers()))

    def close(self):
        logging.getLogger("transformers").removeHandler(self.fallbacks)

    def forward(self, ids, cache, start: int):
        """Logits of the last position and the cache after feeding `ids` at positions start..."""
        kwargs = {"use_cache": True}
        if cache is not None:
            kwargs[self.cache_keyword] = cache
        if self.keep_keyword:
            kwargs[self.keep_keyword] = 1
        if self.passes_position:
            kwargs["cache_position"] = torch.arange(start, start + ids.shape[1], device=ids.device)
        out = self.model(input_ids=ids, **kwargs)
        next_cache = getattr(out, self.cache_keyword, None)
        return out.logits[:, -1, :], next_cache if next_cache is not None else cache

    def prefill(self, ids, chunk: int | None):
        logits, cache = None, None
        step = chunk or ids.shape[1]
        for start in range(0, ids.shape[1], step):
            logits, cache = self.forward(ids[:, start:start + step], cache, start)
        return logits, cache

    def ssm_path(self, kernels: dict) -> str:
        """Which implementation the SSM mixers run: transformers uses the mamba_ssm / causal_conv1d kernels on CUDA
        when they import, its torch reference code otherwise."""
        if not self.has_ssm:
            return ""
        if self.device != "cuda":
            return "torch fallback (CPU)"
        if kernels["mamba_ssm"]:
            return "mamba_ssm kernels" + (", causal_conv1d kernel" if kernels["causal_conv1d"] else ", torch conv1d")
        return "torch fallback (mamba_ssm not importable)"


def tensor_bytes(value, seen: set, depth: int = 0) -> int:
    """Bytes of the distinct tensors reachable from a cache object (its lists, dicts and attributes)."""
    if depth > 6 or id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v, seen, depth + 1) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v, seen, depth + 1) for v in value.values())
    if hasattr(value, "__dict__") and not isinstance(value, (str, bytes, int, float, type)):
        return sum(tensor_bytes(v, seen, depth + 1) for v in vars(value).values())
    return 0


def statistics(samples: list) -> dict:
    """The fields of Swift's Statistics: median, mean, sample standard deviation, extremes."""
    ordered = sorted(samples)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    mean = sum(ordered) / n
    stddev = math.sqrt(sum((x - mean) ** 2 for x in ordered) / (n - 1)) if n > 1 else 0.0
    return {"count": n, "median": median, "mean": mean, "stddev": stddev, "min": ordered[0], "max": ordered[-1]}


class Clock:
    """Times regions with CUDA events on a GPU (read after one synchronisation) or perf_counter on a CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def region(self, work):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = work()
            end.record()
            return result, (start, end)
        begin = time.perf_counter()
        result = work()
        return result, time.perf_counter() - begin

    def seconds(self, marks: list) -> list:
        if not self.cuda:
            return marks
        torch.cuda.synchronize()
        return [start.elapsed_time(end) / 1000 for start, end in marks]


def is_out_of_memory(error: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    text = str(error)
    return isinstance(error, oom_type) or "out of memory" in text or "can't allocate memory" in text


class Measurer:
    """Runs the measurement protocol, keeping the last model so that consecutive points of one model share it."""

    def __init__(self):
        self.loaded: tuple[str, LoadedModel] | None = None
        self.kernels: dict | None = None

    def model(self, point: dict, settings: dict, config: dict, device: str) -> LoadedModel:
        key = json.dumps([config, point["dtype"], settings.get("seed", 0), device], sort_keys=True)
        if self.loaded and self.loaded[0] == key:
            return self.loaded[1]
        self.release()
        loaded = LoadedModel(config, point["dtype"], device, int(settings.get("seed", 0)), point["model"])
        self.loaded = (key, loaded)
        return loaded

    def release(self):
        if self.loaded:
            self.loaded[1].close()
        self.loaded = None
        gc.collect()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def measure(self, point: dict, settings: dict, config: dict, memory_limit: int | None) -> dict:
        require_torch()
        if point.get("dtype") not in DTYPES:
            raise WorkerError(f"dtype '{point.get('dtype')}' cannot run on the torch backend; use fp32, bf16 or fp16")
        if self.kernels is None:
            self.kernels = {name: importable(name) for name in KERNEL_MODULES}
        cuda = torch.cuda.is_available()
        device = "cuda" if cuda else "cpu"
        if cuda:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, memory_limit / total) if memory_limit else 1.0)
        try:
            with torch.inference_mode():
                return self.run(point, settings, config, device)
        except WorkerError:
            raise
        except Exception as error:  # noqa: BLE001 - every engine failure becomes a failed point
            oom = is_out_of_memory(error)
            self.release()
            raise WorkerError(("out of memory: " if oom else "") + one_line(error), out_of_memory=oom) from error

    def run(self, point: dict, settings: dict, config: dict, device: str) -> dict:
        loaded = self.model(point, settings, config, device)
        cuda = device == "cuda"
        clock = Clock(cuda)
        batch, context, generate = int(point["batch"]), int(point["context"]), int(point["generate"])
        seed = int(settings.get("seed", 0))
        warmups, repeats = int(settings.get("warmups", 1)), int(settings.get("repeats", 3))
        decode_steps = int(settings.get("decodeSteps", 16))
        chunk = settings.get("prefillChunk")
        generator = torch.Generator().manual_seed(seed + context)
        ids = torch.randint(0, loaded.vocab, (batch, context), generator=generator).to(device)
        steps = max(decode_steps, generate)

        ttft, tpot, end_to_end = [], [], []
        cache_bytes = 0
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for repeat in range(warmups + repeats):
            logits = cache = None
            (logits, cache), prefill_mark = clock.region(lambda: loaded.prefill(ids, chunk))
            cache_bytes = tensor_bytes(cache, set())
            step_marks = []
            for i in range(steps):
                tokens = logits.argmax(-1)[:, None]
                (logits, cache), mark = clock.region(lambda: loaded.forward(tokens, cache, context + i))
                step_marks.append(mark)
            prefill_seconds, *step_seconds = clock.seconds([prefill_mark] + step_marks)
            if repeat < warmups:
                continue
            ttft.append(prefill_seconds)
            tpot += step_seconds[:decode_steps]
            end_to_end.append(prefill_seconds + sum(step_seconds[:generate]))
        logits = cache = None
        if cuda:
            peak_engine = torch.cuda.max_memory_allocated()
            peak_process = torch.cuda.max_memory_reserved()
        else:
            peak_engine = peak_process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        prefill_breakdown, decode_breakdown = {}, {}
        if settings.get("profile", True):
            prefill_breakdown, decode_breakdown = self.profile(loaded, ids, chunk, context, decode_steps, cuda)

        ttft_stats, tpot_stats = statistics(ttft), statistics(tpot)
        return {
            "config": point,
            "ttft": ttft_stats,
            "tpot": tpot_stats,
            "endToEnd": statistics(end_to_end),
            "prefillTokensPerSecond": batch * context / ttft_stats["median"],
            "decodeTokensPerSecond": batch / tpot_stats["median"],
            "peakEngineBytes": int(peak_engine),
            "weightBytes": int(loaded.weight_bytes),
            "cacheBytes": int(cache_bytes),
            "peakProcessBytes": int(peak_process),
            "prefillBreakdown": prefill_breakdown,
            "decodeBreakdown": decode_breakdown,
            "energy": None,
            "notes": self.notes(loaded, point, seed, chunk, cuda),
        }

    def profile(self, loaded: LoadedModel, ids, chunk, context: int, decode_steps: int, cuda: bool):
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with ProfilerScopes(loaded.model):
            with profile(activities=activities) as prefill_profile:
                logits, cache = loaded.prefill(ids, chunk)
                if cuda:
                    torch.cuda.synchronize()
            with profile(activities=activities) as decode_profile:
                for i in range(decode_steps):
                    logits, cache = loaded.forward(logits.argmax(-1)[:, None], cache, context + i)
                if cuda:
                    torch.cuda.synchronize()
        prefill = breakdown(prefill_profile.events(), "prefill", cuda)
        decode = {k: v / decode_steps for k, v in breakdown(decode_profile.events(), "decode", cuda).items()}
        return prefill, decode

    def notes(self, loaded: LoadedModel, point: dict, seed: int, chunk, cuda: bool) -> str:
        where = torch.cuda.get_device_name(0) if cuda else "CPU"
        parts = [f"HF {type(loaded.model).__name__}, random init (torch.manual_seed({seed})), {point['dtype']} on {where}"]
        if loaded.has_attention:
            parts.append(f"attention {loaded.attention}")
        path = loaded.ssm_path(self.kernels)
        if path:
            parts.append(f"SSM path: {path}")
        if loaded.fallbacks.messages:
            parts.append("transformers fell back to torch for " + ", ".join(loaded.fallbacks.messages))
        parts.append(f"prefill chunked by {chunk} tokens" if chunk else "prefill in one pass")
        parts.append("timed with CUDA events; peak = torch.cuda max allocated (engine) and reserved (process)" if cuda
                     else "timed with perf_counter; peak = the worker's ru_maxrss (not reset between points)")
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# fixtures: the golden logits of the CPU engine (formerly tools/reference/make_fixtures.py)
# --------------------------------------------------------------------------------------------

VOCAB = 96
SEQ_LEN = 24
BASE_SEED = 1234
CHECK_ATOL = 1e-6
INDEPENDENT_ATOL = 1e-5  # fp32 HF reference vs float64 re-implementation
KEEP_FILES = {"config.json", "model.safetensors", "expected.json"}


# --------------------------------------------------------------------------------------------
# Family definitions. Every entry: model_type, config kwargs, and human notes.
# --------------------------------------------------------------------------------------------

def _common(**kw):
    base = dict(vocab_size=VOCAB, pad_token_id=None, bos_token_id=None, eos_token_id=None)
    base.update(kw)
    return base


FAMILIES: dict[str, dict] = {
    "llama": dict(
        model_type="llama",
        required=True,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,  # deliberately != hidden_size / num_attention_heads (=8): q_proj is 64x32
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=100.0,
                factor=4.0,
                low_freq_factor=1.0,
                high_freq_factor=2.0,
                original_max_position_embeddings=16,
            ),
        ),
        notes=(
            "LlamaForCausalLM, eager attention, GQA 4q/2kv, head_dim 16 (explicit; hidden 32). "
            "RoPE llama3 scaling: rope_theta 100, factor 4, low_freq_factor 1, high_freq_factor 2, "
            "original_max_position_embeddings 16 -> low_freq_wavelen 16, high_freq_wavelen 8. "
            "With head_dim 16 / theta 100 the 8 inverse frequencies have wavelengths "
            "6.28 (kept), 11.2 (smoothed band) and 19.9..353 (divided by factor), so all three llama3 "
            "branches are exercised. attention scaling = head_dim**-0.5; llama3 attention_factor = 1."
        ),
    ),
    "qwen2": dict(
        model_type="qwen2",
        required=True,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
            use_sliding_window=True,
            sliding_window=8,
            max_window_layers=1,
        ),
        notes=(
            "Qwen2ForCausalLM, eager attention, GQA 4q/2kv, head_dim 8, q/k/v have biases (o_proj none). "
            "use_sliding_window=true, sliding_window=8, max_window_layers=1 -> layer_types "
            "[full_attention, sliding_attention, sliding_attention] (layer i slides iff i >= max_window_layers). "
            "Sliding mask: query i attends key j iff j <= i and i - j < 8 (8 keys including itself)."
        ),
    ),
    "mistral": dict(
        model_type="mistral",
        required=False,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
            sliding_window=8,
        ),
        notes=(
            "MistralForCausalLM, eager attention, GQA 4q/2kv, head_dim 8, sliding_window 8 on every layer: "
            "query i attends key j iff j <= i and i - j < 8."
        ),
    ),
    "qwen3": dict(
        model_type="qwen3",
        required=False,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
        notes=(
            "Qwen3ForCausalLM, eager attention, GQA 4q/2kv, head_dim 16 (explicit, hidden 32), no qkv bias, "
            "per-head RMSNorm q_norm/k_norm (weight shape [head_dim]) applied to q and k BEFORE RoPE. "
            "No sliding window (use_sliding_window false)."
        ),
    ),
    "phi3": dict(
        model_type="phi3",
        required=False,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            original_max_position_embeddings=64,
            rms_norm_eps=1e-5,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5),
        ),
        notes=(
            "Phi3ForCausalLM, eager attention, GQA 4q/2kv, head_dim 8, partial_rotary_factor 0.5 -> "
            "rotary_dim 4: RoPE (rotate_half layout) is applied to the FIRST 4 dims of each head, dims 4..7 "
            "pass through. Fused qkv_proj rows = [q (4*8) | k (2*8) | v (2*8)]; fused gate_up_proj rows = "
            "[gate (64) | up (64)], act = silu(gate) * up."
        ),
    ),
    "mamba": dict(
        model_type="mamba",
        required=True,
        config=_common(
            hidden_size=32,
            state_size=8,
            num_hidden_layers=2,
            expand=2,
            conv_kernel=4,
            time_step_rank="auto",
            use_bias=False,
            use_conv_bias=True,
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=True,
        ),
        notes=(
            "MambaForCausalLM, pure-PyTorch sequential selective scan (mamba_ssm / causal_conv1d not "
            "installed; associative_scan is only used under torch.compile). intermediate 64, dt_rank "
            "ceil(32/16)=2, state 8, conv 4. tie_word_embeddings=true: lm_head.weight is NOT in the "
            "safetensors file; logits = norm_f(h) @ backbone.embeddings.weight^T."
        ),
    ),
    "falcon_mamba": dict(
        model_type="falcon_mamba",
        required=False,
        config=_common(
            hidden_size=32,
            state_size=8,
            num_hidden_layers=2,
            expand=2,
            conv_kernel=4,
            time_step_rank="auto",
            use_bias=False,
            use_conv_bias=True,
            layer_norm_epsilon=1e-5,
            mixer_rms_eps=1e-6,
            tie_word_embeddings=True,
        ),
        notes=(
            "FalconMambaForCausalLM, pure-PyTorch sequential selective scan. Same as mamba plus weightless "
            "RMS normalisation (eps mixer_rms_eps=1e-6) of B, C and the dt low-rank input after x_proj. "
            "tie_word_embeddings=true (no lm_head.weight in the file)."
        ),
    ),
    "mamba2": dict(
        model_type="mamba2",
        required=True,
        config=_common(
            hidden_size=32,
            num_heads=8,
            head_dim=8,
            state_size=8,
            n_groups=2,
            num_hidden_layers=2,
            expand=2,
            conv_kernel=4,
            chunk_size=8,
            use_bias=False,
            use_conv_bias=True,
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=False,
        ),
        notes=(
            "Mamba2ForCausalLM, pure-PyTorch chunked SSD scan (mamba2_chunk_scan torch fallback, chunk_size 8, "
            "24 tokens = 3 chunks). intermediate 64 = 8 heads x head_dim 8, n_groups 2, state 8, "
            "conv_dim = 64 + 2*2*8 = 96, in_proj out = 64 (z) + 96 (xBC) + 8 (dt) = 168. "
            "Gated RMSNorm with group_size = intermediate/n_groups = 32."
        ),
    ),
    "bamba": dict(
        model_type="bamba",
        required=True,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_layer_indices=[1],
            mamba_n_heads=8,
            mamba_d_head=8,
            mamba_n_groups=2,
            mamba_d_state=8,
            mamba_d_conv=4,
            mamba_expand=2,
            mamba_chunk_size=8,
            mamba_conv_bias=True,
            mamba_proj_bias=False,
            max_position_embeddings=64,
            rms_norm_eps=1e-5,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
        notes=(
            "BambaForCausalLM, layers [mamba, attention, mamba] (attn_layer_indices [1]); pure-PyTorch "
            "Mamba2 chunked scan (chunk 8). Attention: eager, GQA 4q/2kv, head_dim 8, "
            "partial_rotary_factor hard-coded 0.5 -> RoPE on first 4 dims of each head."
        ),
    ),
    "nemotron_h": dict(
        model_type="nemotron_h",
        required=True,
        config=_common(
            hidden_size=32,
            hybrid_override_pattern="M*-M-",
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            intermediate_size=64,
            mlp_hidden_act="relu2",
            ssm_state_size=8,
            mamba_num_heads=8,
            mamba_head_dim=8,
            n_groups=2,
            conv_kernel=4,
            expand=2,
            chunk_size=8,
            time_step_min=0.05,  # nemotron_h clamps softplus(dt + dt_bias) to >= time_step_min; make it bite
            use_conv_bias=True,
            mamba_proj_bias=False,
            attention_bias=False,
            mlp_bias=False,
            max_position_embeddings=64,
            layer_norm_epsilon=1e-5,
            initializer_range=0.1,
            residual_in_fp32=False,
            tie_word_embeddings=False,
        ),
        notes=(
            "NemotronHForCausalLM, hybrid_override_pattern 'M*-M-' -> [mamba2, attention, mlp, mamba2, mlp]. "
            "Attention has NO positional embedding (no RoPE). MLP = down(relu(up(x))^2) (no gate). "
            "Mamba2 mixer with pure-PyTorch chunked scan (chunk 8)."
        ),
    ),
    "jamba": dict(
        model_type="jamba",
        required=False,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_layer_period=4,
            attn_layer_offset=2,
            expert_layer_period=2,
            expert_layer_offset=1,
            num_experts=4,
            num_experts_per_tok=2,
            mamba_d_state=8,
            mamba_d_conv=4,
            mamba_expand=2,
            mamba_dt_rank=4,
            mamba_conv_bias=True,
            mamba_proj_bias=False,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            initializer_range=0.1,
            tie_word_embeddings=False,
        ),
        notes=(
            "JambaForCausalLM, layers [mamba+mlp, mamba+moe, attention+mlp, mamba+moe] "
            "(attn_layer_period 4 / offset 2, expert_layer_period 2 / offset 1, 4 experts top-2). "
            "Attention has NO RoPE. Mamba mixer: sequential pure-PyTorch scan with weighted RMSNorms on "
            "dt (rank 4), B and C (state 8)."
        ),
    ),
    "zamba2": dict(
        model_type="zamba2",
        required=False,
        config=_common(
            hidden_size=32,
            num_hidden_layers=4,
            layers_block_type=["mamba", "hybrid", "mamba", "hybrid"],
            mamba_d_state=8,
            mamba_d_conv=4,
            mamba_expand=2,
            mamba_ngroups=2,
            n_mamba_heads=8,
            chunk_size=8,
            time_step_min=0.05,  # zamba2 clamps softplus(dt + dt_bias) to >= time_step_min; make it bite
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=4,  # MHA: GQA is incompatible with the q/k/v LoRA adapters (they output 2*hidden)
            num_mem_blocks=2,
            use_shared_attention_adapter=True,
            adapter_rank=8,
            use_mem_rope=True,
            max_position_embeddings=64,
            rms_norm_eps=1e-5,
            initializer_range=0.1,
            tie_word_embeddings=True,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
        notes=(
            "Zamba2ForCausalLM, layers [mamba, hybrid, mamba, hybrid], 2 shared transformer blocks "
            "(num_mem_blocks 2) used round-robin by the hybrid layers, with per-hybrid-layer LoRA adapters "
            "(use_shared_attention_adapter, adapter_rank 8) and use_mem_rope. Shared block input is "
            "concat(hidden, original_embeddings) (width 64). tie_word_embeddings=true."
        ),
    ),
    "falcon_h1": dict(
        model_type="falcon_h1",
        required=False,
        config=_common(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,  # explicit, != hidden/heads (=8), as in the released Falcon-H1 checkpoints
            mamba_d_ssm=64,
            mamba_n_heads=8,
            mamba_d_head=8,
            mamba_n_groups=2,
            mamba_d_state=8,
            mamba_d_conv=4,
            mamba_expand=2,
            mamba_chunk_size=8,
            mamba_conv_bias=True,
            mamba_proj_bias=False,
            mamba_norm_before_gate=False,
            mamba_rms_norm=False,  # as in the released Falcon-H1 checkpoints: y * silu(z), no gated norm
            max_position_embeddings=64,
            rms_norm_eps=1e-5,
            initializer_range=0.1,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
            # Non-trivial muP multipliers so that an implementation that ignores any of them fails.
            embedding_multiplier=1.5,
            lm_head_multiplier=0.75,
            mlp_multipliers=[0.8, 1.25],
            key_multiplier=0.6,
            attention_in_multiplier=1.1,
            attention_out_multiplier=0.9,
            ssm_multipliers=[0.7, 1.2, 0.9, 1.3, 0.8],
            ssm_in_multiplier=1.2,
            ssm_out_multiplier=0.7,
        ),
        notes=(
            "FalconH1ForCausalLM, every layer = parallel attention + mamba2 (sum) followed by MLP. "
            "Pure-PyTorch Mamba2 chunked scan (chunk 8). muP multipliers set to NON-default values "
            "(see config.json): embedding 1.5, lm_head 0.75, mlp [gate 0.8, down 1.25], key 0.6, "
            "attention_in 1.1, attention_out 0.9, ssm [z 0.7, x 1.2, B 0.9, C 1.3, dt 0.8], ssm_in 1.2, "
            "ssm_out 0.7. mamba_rms_norm=false (as released checkpoints): the scan output is multiplied by "
            "silu(z) and there is NO gated norm (no mamba.norm.weight in the file). Attention head_dim 16 "
            "explicit (hidden 32 / 4 heads would give 8): q_proj is 64x32, o_proj 32x64."
        ),
    ),
}

ORDER = [
    "llama", "qwen2", "mistral", "qwen3", "phi3",
    "mamba", "falcon_mamba", "mamba2", "bamba", "nemotron_h", "jamba", "zamba2", "falcon_h1",
]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def family_seed(name: str) -> int:
    return BASE_SEED + ORDER.index(name)


def make_input_ids(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (1, SEQ_LEN), generator=g)


def round7(x: float) -> float:
    return float(f"{x:.7g}")


def is_norm_module(module: torch.nn.Module) -> bool:
    n = type(module).__name__.lower()
    return "norm" in n and not isinstance(module, (torch.nn.Linear, torch.nn.Embedding))


def perturb(model: torch.nn.Module, seed: int) -> list[str]:
    """Perturb norm weights, all-zero biases, D and A_log so that they influence the logits."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 10_000)
        touched = []

        def randn_like(p):
            return torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)

        seen = set()
        for mod_name, module in model.named_modules():
            for p_name, p in module.named_parameters(recurse=False):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if is_norm_module(module) and p_name == "weight":
                    p.copy_(1.0 + 0.1 * randn_like(p))
                    touched.append(f"{full}: 1+0.1*randn")
                elif is_norm_module(module) and p_name == "bias":
                    p.copy_(0.1 * randn_like(p))
                    touched.append(f"{full}: 0.1*randn")
                elif p_name == "bias" and torch.count_nonzero(p) == 0:
                    p.copy_(0.1 * randn_like(p))
                    touched.append(f"{full}: 0.1*randn (was zero)")
                elif p_name == "D":
                    p.copy_(1.0 + 0.1 * randn_like(p))
                    touched.append(f"{full}: 1+0.1*randn")
                elif p_name == "A_log":
                    p.add_(0.1 * randn_like(p))
                    touched.append(f"{full}: += 0.1*randn")
                elif p_name == "dt_bias":
                    # Mamba-2 style per-head dt bias. Some families initialise it to ones; replace constant
                    # values by the usual inverse-softplus of dt ~ logUniform[1e-3, 1e-1]. The LAST head gets
                    # dt_bias = -12 so that softplus(dt) falls below 1e-3: families that clamp dt to
                    # time_step_min (nemotron_h, zamba2) then differ from those that do not.
                    if torch.all(p == p.flatten()[0]):
                        u = torch.rand(p.shape, generator=g, dtype=torch.float32)
                        dt = torch.exp(u * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
                        p.copy_((dt + torch.log(-torch.expm1(-dt))).to(p.dtype))
                        touched.append(f"{full}: inverse_softplus(logUniform[1e-3,1e-1]) (was constant)")
                    p[..., -1] = -12.0
                    touched.append(f"{full}: last head = -12")
        return touched


def summarize_touched(touched: list[str]) -> str:
    # compress "model.layers.0.input_layernorm.weight" etc. into unique suffix patterns
    pats = sorted({re.sub(r"\.\d+\.", ".N.", t.split(":")[0]) + ":" + t.split(":", 1)[1] for t in touched})
    return "; ".join(pats)


def forward_logits(model, input_ids) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids)
    return out.logits[0].float()


def tensor_table(path: Path) -> dict[str, list[int]]:
    table = {}
    with safe_open(str(path), framework="pt") as f:
        for k in sorted(f.keys()):
            table[k] = list(f.get_slice(k).get_shape())
    return table


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------

def build_one(name: str, out_root: Path) -> dict:
    spec = FAMILIES[name]
    seed = family_seed(name)
    torch.manual_seed(seed)

    config = AutoConfig.for_model(spec["model_type"], **spec["config"])
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    model = model.float().eval()
    touched = perturb(model, seed)
    model.eval()

    input_ids = make_input_ids(seed)
    logits = forward_logits(model, input_ids)
    # same pass without a cache object, must agree (the SSM mixers take slightly different branches)
    with torch.no_grad():
        logits_nc = model(input_ids, use_cache=False).logits[0].float()
    cache_diff = (logits - logits_nc).abs().max().item()

    out_dir = out_root / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(str(out_dir))
    for p in out_dir.iterdir():
        if p.name not in KEEP_FILES:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    fix_config_json(name, model, out_dir / "config.json")
    for p in out_dir.iterdir():
        p.chmod(0o644)

    table = tensor_table(out_dir / "model.safetensors")
    notes = spec["notes"]
    notes += (
        f" Built with AutoModelForCausalLM.from_config(attn_implementation='eager', float32), "
        f"torch.manual_seed({seed}); class {type(model).__name__}. "
        f"Perturbed after init (generator seed {seed + 10_000}; in-memory module names, N = layer index, "
        f"the file may use checkpoint names such as nemotron_h 'backbone.*' or jamba per-expert weights): "
        f"{summarize_touched(touched)}. "
        f"Logits from model(input_ids).logits[0] (default use_cache; max |diff| vs use_cache=False "
        f"= {cache_diff:.3g}). input_ids = torch.randint(0, {VOCAB}, (1, {SEQ_LEN}), "
        f"generator=torch.Generator().manual_seed({seed})). Floats rounded to 7 significant digits."
    )
    expected = {
        "model_type": spec["model_type"],
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "input_ids": [int(x) for x in input_ids[0].tolist()],
        "logits": [[round7(v) for v in row] for row in logits.tolist()],
        "notes": notes,
    }
    with open(out_dir / "expected.json", "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")

    size = sum(p.stat().st_size for p in out_dir.iterdir())
    return dict(
        name=name,
        model_type=spec["model_type"],
        class_name=type(model).__name__,
        size=size,
        tensors=table,
        logits_absmax=logits.abs().max().item(),
        logits_std=logits.std().item(),
        cache_diff=cache_diff,
    )


def fix_config_json(name: str, model, path: Path) -> None:
    """Make sure derived shape fields are present in config.json.

    Only keys that ``from_pretrained`` tolerates are added (they are recomputed on load anyway).
    Read-only properties such as bamba/jamba/falcon_h1 ``layers_block_type`` cannot be written:
    the loader would try to set them and fail, so an implementation must derive them (see NOTES.md).
    """
    cfg = json.loads(path.read_text())
    c = model.config
    extra = {}
    if name in ("mamba", "falcon_mamba"):
        extra["intermediate_size"] = c.intermediate_size
    if name == "nemotron_h":
        extra["hybrid_override_pattern"] = c.hybrid_override_pattern
        extra["num_hidden_layers"] = c.num_hidden_layers
    if name == "zamba2":
        for k in ("attention_head_dim", "attention_hidden_size", "mamba_headdim", "hybrid_layer_ids",
                  "kv_channels", "num_query_groups"):
            extra[k] = getattr(c, k)
    for k, v in extra.items():
        if k not in cfg:
            cfg[k] = v
    assert "model_type" in cfg
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Independent reference (--independent): re-derives every fixture's logits from config.json and
# model.safetensors with plain torch ops in float64 and sequential scans (no transformers code).
# It documents, in executable form, the semantics described in tools/reference/NOTES.md.
# --------------------------------------------------------------------------------------------

def rms(x, w, eps):
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * w if w is not None else x


def grouped_rms(x, w, eps, groups):
    *p, d = x.shape
    xg = x.view(*p, groups, d // groups)
    xg = xg * torch.rsqrt(xg.pow(2).mean(-1, keepdim=True) + eps)
    return xg.view(*p, d) * w


def lin(x, W, b=None):
    y = x @ W.T
    return y + b if b is not None else y


def act(name, x):
    return {"silu": F.silu, "gelu": lambda t: F.gelu(t), "relu2": lambda t: F.relu(t) ** 2}[name](x)


def inv_freq(theta, dim):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def llama3_scale(inv, p):
    factor, lo, hi, old = p["factor"], p["low_freq_factor"], p["high_freq_factor"], p["original_max_position_embeddings"]
    out = []
    for f in inv.tolist():
        wl = 2 * math.pi / f
        if wl < old / hi:
            out.append(f)
        elif wl > old / lo:
            out.append(f / factor)
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append((1 - s) * f / factor + s * f)
    return torch.tensor(out, dtype=torch.float32)


def rope(x, inv, rot_dim):
    # x: [T, H, D]; rotate_half layout on the first rot_dim dims
    T = x.shape[0]
    pos = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]  # fp32 like HF
    emb = torch.cat([pos, pos], -1)
    cos, sin = emb.cos().to(REF_DT)[:, None, :], emb.sin().to(REF_DT)[:, None, :]
    xr, xp = x[..., :rot_dim], x[..., rot_dim:]
    h = rot_dim // 2
    rot = torch.cat([-xr[..., h:], xr[..., :h]], -1)
    return torch.cat([xr * cos + rot * sin, xp], -1)


def attention(q, k, v, scale, window=None):
    # q [T,Hq,D], k/v [T,Hkv,D]
    T, Hq, D = q.shape
    Hkv = k.shape[1]
    rep = Hq // Hkv
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    s = torch.einsum("thd,shd->hts", q, k) * scale
    i = torch.arange(T)[:, None]; j = torch.arange(T)[None, :]
    mask = j <= i
    if window is not None:
        mask = mask & (i - j < window)
    s = s.masked_fill(~mask, float("-inf"))
    p = s.softmax(-1)
    return torch.einsum("hts,shd->thd", p, v).reshape(T, Hq * D)


def causal_conv(x, w, b):
    # x [T, C], w [C,1,K]
    T, C = x.shape
    K = w.shape[-1]
    xp = torch.cat([torch.zeros(K - 1, C, dtype=x.dtype), x], 0)
    out = torch.stack([(xp[t:t + K] * w[:, 0, :].T).sum(0) for t in range(T)])
    return out + b if b is not None else out


def mamba1(x, W, p, cfg, rank, N, bcdt_norm=None, eps=None):
    d_in = W[p + "D"].shape[0]
    xz = lin(x, W[p + "in_proj.weight"], W.get(p + "in_proj.bias"))
    xs, z = xz[:, :d_in], xz[:, d_in:]
    xs = F.silu(causal_conv(xs, W[p + "conv1d.weight"], W.get(p + "conv1d.bias")))
    dbc = lin(xs, W[p + "x_proj.weight"])
    dtr, B, C = dbc[:, :rank], dbc[:, rank:rank + N], dbc[:, rank + N:]
    if bcdt_norm == "weightless":
        dtr, B, C = rms(dtr, None, eps), rms(B, None, eps), rms(C, None, eps)
    elif bcdt_norm == "weighted":
        dtr = rms(dtr, W[p + "dt_layernorm.weight"], eps)
        B = rms(B, W[p + "b_layernorm.weight"], eps)
        C = rms(C, W[p + "c_layernorm.weight"], eps)
    dt = F.softplus(lin(dtr, W[p + "dt_proj.weight"], W[p + "dt_proj.bias"]))  # [T, d_in]
    A = -torch.exp(W[p + "A_log"])  # [d_in, N]
    h = torch.zeros(d_in, N, dtype=REF_DT)
    ys = []
    for t in range(x.shape[0]):
        h = torch.exp(dt[t][:, None] * A) * h + dt[t][:, None] * B[t][None, :] * xs[t][:, None]
        ys.append(h @ C[t] + W[p + "D"] * xs[t])
    y = torch.stack(ys) * F.silu(z)
    return lin(y, W[p + "out_proj.weight"], W.get(p + "out_proj.bias"))


def mamba2(x, W, p, H, P, G, N, eps, dt_min=0.0, norm="grouped", norm_before_gate=False, mup=None,
           in_mult=1.0):
    d_in = H * P
    zxbcdt = lin(x * in_mult, W[p + "in_proj.weight"], W.get(p + "in_proj.bias"))
    if mup is not None:
        zxbcdt = zxbcdt * mup
    z = zxbcdt[:, :d_in]
    xbc = zxbcdt[:, d_in:d_in + d_in + 2 * G * N]
    dt = zxbcdt[:, -H:]
    xbc = F.silu(causal_conv(xbc, W[p + "conv1d.weight"], W.get(p + "conv1d.bias")))
    xs, B, C = xbc[:, :d_in], xbc[:, d_in:d_in + G * N], xbc[:, d_in + G * N:]
    dt = F.softplus(dt + W[p + "dt_bias"]).clamp(min=dt_min)
    A = -torch.exp(W[p + "A_log"])
    T = x.shape[0]
    xs = xs.view(T, H, P); B = B.view(T, G, N); C = C.view(T, G, N)
    grp = torch.arange(H) // (H // G)
    h = torch.zeros(H, P, N, dtype=REF_DT)
    ys = []
    for t in range(T):
        Bt, Ct = B[t][grp], C[t][grp]  # [H, N]
        h = torch.exp(dt[t] * A)[:, None, None] * h + (dt[t][:, None, None] * xs[t][:, :, None] * Bt[:, None, :])
        ys.append(torch.einsum("hpn,hn->hp", h, Ct) + W[p + "D"][:, None] * xs[t])
    y = torch.stack(ys).reshape(T, d_in)
    if norm == "grouped":
        if norm_before_gate:
            y = grouped_rms(y, W[p + "norm.weight"], eps, G) * F.silu(z)
        else:
            y = grouped_rms(y * F.silu(z), W[p + "norm.weight"], eps, G)
    else:
        y = y * F.silu(z)
    return lin(y, W[p + "out_proj.weight"], W.get(p + "out_proj.bias"))


def gqa_block(x, W, p, c, head_dim, inv, rot_dim, window=None, qk_norm=False, scale=None, key_mult=1.0,
              q="q_proj", fused=False):
    T = x.shape[0]
    Hq, Hkv = c["num_attention_heads"], c["num_key_value_heads"]
    if fused:
        qkv = lin(x, W[p + "qkv_proj.weight"])
        qq = qkv[:, :Hq * head_dim]; kk = qkv[:, Hq * head_dim:(Hq + Hkv) * head_dim]; vv = qkv[:, (Hq + Hkv) * head_dim:]
    else:
        qq = lin(x, W[p + "q_proj.weight"], W.get(p + "q_proj.bias"))
        kk = lin(x, W[p + "k_proj.weight"], W.get(p + "k_proj.bias"))
        vv = lin(x, W[p + "v_proj.weight"], W.get(p + "v_proj.bias"))
    qq = qq.view(T, Hq, head_dim); kk = kk.view(T, Hkv, head_dim) * key_mult; vv = vv.view(T, Hkv, head_dim)
    if qk_norm:
        qq = rms(qq, W[p + "q_norm.weight"], c["rms_norm_eps"]); kk = rms(kk, W[p + "k_norm.weight"], c["rms_norm_eps"])
    if inv is not None:
        qq = rope(qq, inv, rot_dim); kk = rope(kk, inv, rot_dim)
    o = attention(qq, kk, vv, scale if scale is not None else head_dim ** -0.5, window)
    return lin(o, W[p + "o_proj.weight"], W.get(p + "o_proj.bias"))


def swiglu(x, W, p, act_name="silu"):
    return lin(act(act_name, lin(x, W[p + "gate_proj.weight"])) * lin(x, W[p + "up_proj.weight"]), W[p + "down_proj.weight"])


def independent_logits(d: Path):
    """Logits of the fixture in folder ``d`` computed WITHOUT transformers (plain torch ops, float64,
    sequential SSM scans) from config.json + model.safetensors only. Executable form of NOTES.md."""
    c = json.loads((d / "config.json").read_text())
    W = {k: v.to(REF_DT) for k, v in load_file(str(d / "model.safetensors")).items()}
    exp = json.loads((d / "expected.json").read_text())
    ids = torch.tensor(exp["input_ids"])
    mt = c["model_type"]
    rp = c.get("rope_parameters") or {}
    if mt in ("llama", "qwen2", "qwen3", "mistral", "phi3"):
        hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        rot = int(hd * rp.get("partial_rotary_factor", 1.0))
        inv = inv_freq(rp["rope_theta"], rot)
        if rp.get("rope_type") == "llama3":
            inv = llama3_scale(inv, rp)
        x = W["model.embed_tokens.weight"][ids]
        eps = c["rms_norm_eps"]
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            win = None
            if mt == "mistral":
                win = c.get("sliding_window")
            if mt in ("qwen2", "qwen3") and c["layer_types"][i] == "sliding_attention":
                win = c["sliding_window"]
            h = rms(x, W[p + "input_layernorm.weight"], eps)
            x = x + gqa_block(h, W, p + "self_attn.", c, hd, inv, rot, win, qk_norm=(mt == "qwen3"), fused=(mt == "phi3"))
            h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
            if mt == "phi3":
                gu = lin(h, W[p + "mlp.gate_up_proj.weight"]); I = gu.shape[-1] // 2
                x = x + lin(F.silu(gu[:, :I]) * gu[:, I:], W[p + "mlp.down_proj.weight"])
            else:
                x = x + swiglu(h, W, p + "mlp.")
        x = rms(x, W["model.norm.weight"], eps)
        return lin(x, W["lm_head.weight"]), exp
    if mt in ("mamba", "falcon_mamba"):
        x = W["backbone.embeddings.weight"][ids]
        eps = c["layer_norm_epsilon"]
        for i in range(c["num_hidden_layers"]):
            p = f"backbone.layers.{i}."
            x = x + mamba1(rms(x, W[p + "norm.weight"], eps), W, p + "mixer.", c, c["time_step_rank"], c["state_size"],
                           "weightless" if mt == "falcon_mamba" else None, c.get("mixer_rms_eps"))
        x = rms(x, W["backbone.norm_f.weight"], eps)
        return lin(x, W.get("lm_head.weight", W["backbone.embeddings.weight"])), exp
    if mt == "mamba2":
        x = W["backbone.embeddings.weight"][ids]
        eps = c["layer_norm_epsilon"]
        for i in range(c["num_hidden_layers"]):
            p = f"backbone.layers.{i}."
            x = x + mamba2(rms(x, W[p + "norm.weight"], eps), W, p + "mixer.", c["num_heads"], c["head_dim"],
                           c["n_groups"], c["state_size"], eps, dt_min=c["time_step_limit"][0])
        x = rms(x, W["backbone.norm_f.weight"], eps)
        return lin(x, W["lm_head.weight"]), exp
    if mt == "bamba":
        x = W["model.embed_tokens.weight"][ids]; eps = c["rms_norm_eps"]
        hd = c["hidden_size"] // c["num_attention_heads"]; rot = int(hd * rp["partial_rotary_factor"])
        inv = inv_freq(rp["rope_theta"], rot)
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms(x, W[p + "input_layernorm.weight"], eps)
            if i in c["attn_layer_indices"]:
                x = x + gqa_block(h, W, p + "self_attn.", c, hd, inv, rot)
            else:
                x = x + mamba2(h, W, p + "mamba.", c["mamba_n_heads"], c["mamba_d_head"], c["mamba_n_groups"], c["mamba_d_state"], eps)
            x = x + swiglu(rms(x, W[p + "pre_ff_layernorm.weight"], eps), W, p + "feed_forward.")
        x = rms(x, W["model.final_layernorm.weight"], eps)
        return lin(x, W["lm_head.weight"]), exp
    if mt == "nemotron_h":
        x = W["backbone.embeddings.weight"][ids]; eps = c["layer_norm_epsilon"]
        for i, ch in enumerate(c["hybrid_override_pattern"]):
            p = f"backbone.layers.{i}."
            h = rms(x, W[p + "norm.weight"], eps)
            if ch == "M":
                y = mamba2(h, W, p + "mixer.", c["mamba_num_heads"], c["mamba_head_dim"], c["n_groups"], c["ssm_state_size"], eps,
                           dt_min=c["time_step_min"])
            elif ch == "*":
                y = gqa_block(h, W, p + "mixer.", c, c["head_dim"], None, 0)
            else:
                y = lin(act(c["mlp_hidden_act"], lin(h, W[p + "mixer.up_proj.weight"])), W[p + "mixer.down_proj.weight"])
            x = x + y
        x = rms(x, W["backbone.norm_f.weight"], eps)
        return lin(x, W["lm_head.weight"]), exp
    if mt == "jamba":
        x = W["model.embed_tokens.weight"][ids]; eps = c["rms_norm_eps"]
        hd = c["hidden_size"] // c["num_attention_heads"]
        E, K = c["num_experts"], c["num_experts_per_tok"]
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms(x, W[p + "input_layernorm.weight"], eps)
            if i % c["attn_layer_period"] == c["attn_layer_offset"]:
                x = x + gqa_block(h, W, p + "self_attn.", c, hd, None, 0)
            else:
                x = x + mamba1(h, W, p + "mamba.", c, c["mamba_dt_rank"], c["mamba_d_state"], "weighted", eps)
            h = rms(x, W[p + "pre_ff_layernorm.weight"], eps)
            if E > 1 and i % c["expert_layer_period"] == c["expert_layer_offset"]:
                probs = lin(h, W[p + "feed_forward.router.weight"]).softmax(-1)
                tw, ti = probs.topk(K, -1)
                out = torch.zeros_like(h)
                for t in range(h.shape[0]):
                    for k in range(K):
                        e = int(ti[t, k])
                        out[t] += tw[t, k] * swiglu(h[t:t + 1], W, p + f"feed_forward.experts.{e}.")[0]
                x = x + out
            else:
                x = x + swiglu(h, W, p + "feed_forward.")
        x = rms(x, W["model.final_layernorm.weight"], eps)
        return lin(x, W["lm_head.weight"]), exp
    if mt == "zamba2":
        emb = W["model.embed_tokens.weight"][ids]; x = emb.clone(); eps = c["rms_norm_eps"]
        H = c["n_mamba_heads"]; P = c["mamba_headdim"]
        hd = c["attention_head_dim"]; inv = inv_freq(rp["rope_theta"], hd) if c["use_mem_rope"] else None
        hyb = c["hybrid_layer_ids"]
        owner = {}  # block id -> layer prefix holding the shared weights
        for i, lt in enumerate(c["layers_block_type"]):
            if lt == "hybrid":
                k = hyb.index(i); blk = k % c["num_mem_blocks"]
                owner.setdefault(blk, f"model.layers.{i}.shared_transformer.")
                sp = owner[blk]
                cat = torch.cat([x, emb], -1)
                hcat = rms(cat, W[sp + "input_layernorm.weight"], eps)
                T = hcat.shape[0]; nh = c["num_attention_heads"]; nkv = c["num_key_value_heads"]
                def proj(nm):
                    y = lin(hcat, W[sp + f"self_attn.{nm}_proj.weight"])
                    if c["use_shared_attention_adapter"]:
                        a = sp + f"self_attn.linear_{nm}_adapter_list.{k}."
                        y = y + lin(lin(hcat, W[a + "0.weight"]), W[a + "1.weight"])
                    return y
                qq = proj("q").view(T, nh, hd); kk = proj("k").view(T, nkv, hd); vv = proj("v").view(T, nkv, hd)
                if inv is not None:
                    qq = rope(qq, inv, hd); kk = rope(kk, inv, hd)
                a = lin(attention(qq, kk, vv, (hd / 2) ** -0.5), W[sp + "self_attn.o_proj.weight"])
                a = rms(a, W[sp + "pre_ff_layernorm.weight"], eps)
                gu = lin(a, W[sp + "feed_forward.gate_up_proj.weight"])
                ad = sp + f"feed_forward.gate_up_proj_adapter_list.{k}."
                gu = gu + lin(lin(a, W[ad + "0.weight"]), W[ad + "1.weight"])
                I = gu.shape[-1] // 2
                t_out = lin(act(c["hidden_act"], gu[:, :I]) * gu[:, I:], W[sp + "feed_forward.down_proj.weight"])
                t_out = lin(t_out, W[f"model.layers.{i}.linear.weight"])
                mp = f"model.layers.{i}.mamba_decoder."
                h = rms(x + t_out, W[mp + "input_layernorm.weight"], eps)
                x = x + mamba2(h, W, mp + "mamba.", H, P, c["mamba_ngroups"], c["mamba_d_state"], 1e-5, dt_min=c["time_step_min"])
            else:
                mp = f"model.layers.{i}."
                h = rms(x, W[mp + "input_layernorm.weight"], eps)
                x = x + mamba2(h, W, mp + "mamba.", H, P, c["mamba_ngroups"], c["mamba_d_state"], 1e-5, dt_min=c["time_step_min"])
        x = rms(x, W["model.final_layernorm.weight"], eps)
        return lin(x, W.get("lm_head.weight", W["model.embed_tokens.weight"])), exp
    if mt == "falcon_h1":
        eps = c["rms_norm_eps"]
        x = W["model.embed_tokens.weight"][ids] * c["embedding_multiplier"]
        hd = c["head_dim"]; inv = inv_freq(rp["rope_theta"], hd)
        H, P, G, N = c["mamba_n_heads"], c["mamba_d_head"], c["mamba_n_groups"], c["mamba_d_state"]
        d_ssm = c["mamba_d_ssm"]; m = c["ssm_multipliers"]
        mup = torch.cat([torch.full((d_ssm,), m[0]), torch.full((d_ssm,), m[1]), torch.full((G * N,), m[2]),
                         torch.full((G * N,), m[3]), torch.full((H,), m[4])]).to(REF_DT)
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms(x, W[p + "input_layernorm.weight"], eps)
            ms = mamba2(h, W, p + "mamba.", H, P, G, N, eps, norm="grouped" if c["mamba_rms_norm"] else "none",
                        norm_before_gate=c["mamba_norm_before_gate"], mup=mup, in_mult=c["ssm_in_multiplier"])
            at = gqa_block(h * c["attention_in_multiplier"], W, p + "self_attn.", c, hd, inv, hd, key_mult=c["key_multiplier"])
            x = x + ms * c["ssm_out_multiplier"] + at * c["attention_out_multiplier"]
            h = rms(x, W[p + "pre_ff_layernorm.weight"], eps)
            gm, dm = c["mlp_multipliers"]
            y = lin(h, W[p + "feed_forward.up_proj.weight"]) * F.silu(lin(h, W[p + "feed_forward.gate_proj.weight"]) * gm)
            x = x + lin(y, W[p + "feed_forward.down_proj.weight"]) * dm
        x = rms(x, W["model.final_layernorm.weight"], eps)
        return lin(x, W["lm_head.weight"]) * c["lm_head_multiplier"], exp
    raise ValueError(f"no independent reference for model_type {mt!r}")


# --------------------------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------------------------

def check_one(folder: Path) -> tuple[bool, str]:
    exp = json.loads((folder / "expected.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32)
    model.eval()
    ids = torch.tensor([exp["input_ids"]])
    logits = forward_logits(model, ids)
    ref = torch.tensor(exp["logits"], dtype=torch.float64)
    if tuple(ref.shape) != tuple(logits.shape):
        return False, f"shape {tuple(logits.shape)} vs expected {tuple(ref.shape)}"
    diff = (logits.double() - ref).abs().max().item()
    ok = diff <= CHECK_ATOL
    return ok, f"max |diff| = {diff:.3g} (absmax {ref.abs().max().item():.3g})"


def fixtures_root() -> Path | None:
    """The repository's fixture folder when this file is run from a checkout (tools/torch_worker/)."""
    here = Path(__file__).resolve()
    if len(here.parents) > 2 and (here.parents[2] / "Package.swift").exists():
        return here.parents[2] / "Tests" / "ScopeEngineTests" / "Fixtures"
    return None


def build_fixtures(out: Path, names: list[str], print_tensors: bool, log) -> tuple[list, list]:
    """Builds the fixtures of `names` under `out`; returns the built results and (name, error) failures."""
    require_torch()
    require_safetensors()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, safetensors {safetensors.__version__}")
    results, failures = [], []
    for n in names:
        try:
            r = build_one(n, out)
            results.append(r)
            log(f"[built] {n:13s} {r['class_name']:28s} {r['size'] / 1024:7.1f} KiB  "
                f"|logits|max={r['logits_absmax']:.3f} std={r['logits_std']:.3f} cache_diff={r['cache_diff']:.2g}")
            if print_tensors:
                log("  " + json.dumps(r["tensors"]))
        except Exception as e:  # noqa: BLE001
            failures.append((n, f"{type(e).__name__}: {e}"))
            log(f"[FAILED] {n}: {type(e).__name__}: {e}")
            traceback.print_exc()
            shutil.rmtree(out / n, ignore_errors=True)
    total = sum(r["size"] for r in results)
    log(f"total fixture size: {total / 1024:.1f} KiB")
    if failures:
        log("failures: " + "; ".join(f"{n}: {m}" for n, m in failures))
    return results, failures


def check_fixtures(out: Path, names: list[str], log) -> int:
    """Reloads saved fixtures with from_pretrained; returns how many do not reproduce their logits to 1e-6."""
    require_torch()
    bad = 0
    for n in names:
        folder = out / n
        if not folder.exists():
            log(f"[skip] {n}: no fixture folder")
            continue
        try:
            ok, msg = check_one(folder)
        except Exception as e:  # noqa: BLE001
            ok, msg = False, f"{type(e).__name__}: {e}"
        log(f"[{'ok' if ok else 'FAIL'}] {n}: {msg}")
        bad += not ok
    return bad


def independent_fixtures(out: Path, names: list[str], log) -> int:
    """Recomputes saved fixtures without transformers (float64); returns how many differ by more than 1e-5."""
    require_torch()
    require_safetensors()
    bad = 0
    for n in names:
        folder = out / n
        if not folder.exists():
            log(f"[skip] {n}: no fixture folder")
            continue
        logits, exp = independent_logits(folder)
        diff = (logits - torch.tensor(exp["logits"], dtype=REF_DT)).abs().max().item()
        ok = diff <= INDEPENDENT_ATOL
        bad += not ok
        log(f"[{'ok' if ok else 'FAIL'}] {n}: independent float64 re-implementation, max |diff| = {diff:.3g}")
    return bad


def fixture_names(only) -> list[str]:
    names = list(only or ORDER)
    for n in names:
        if n not in FAMILIES:
            raise WorkerError(f"unknown family {n}; known: {', '.join(ORDER)}")
    return names


def fixtures_main(argv: list[str]) -> int:
    """The fixtures command line (also behind tools/reference/make_fixtures.py)."""
    default_out = fixtures_root()
    ap = argparse.ArgumentParser(
        prog="ssm_scope_worker.py fixtures",
        description="Generate (or verify) the golden logits fixtures of ssm-scope's engine from tiny random Hugging "
                    "Face models; see tools/reference/README.md and NOTES.md.")
    ap.add_argument("--out", type=Path, default=default_out, required=default_out is None,
                    help="fixtures root (default: %(default)s)")
    ap.add_argument("--only", nargs="*", help="families to build/check (default: all)")
    ap.add_argument("--check", action="store_true", help="reload saved fixtures and verify logits")
    ap.add_argument("--print-tensors", action="store_true", help="print {name: shape} per fixture")
    ap.add_argument("--independent", action="store_true",
                    help="recompute saved fixtures without transformers (float64) and report the difference")
    args = ap.parse_args(argv)
    try:
        names = fixture_names(args.only)
    except WorkerError as e:
        ap.error(str(e))
    try:
        if args.independent:
            return 1 if independent_fixtures(args.out, names, print) else 0
        if args.check:
            return 1 if check_fixtures(args.out, names, print) else 0
        _, failures = build_fixtures(args.out, names, args.print_tensors, print)
    except WorkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 1 if any(FAMILIES[n]["required"] for n, _ in failures) else 0


def fixtures_request(request: dict) -> dict:
    """The protocol's fixtures op: the same work as the command line, progress lines on standard error."""
    out = request.get("out")
    if not isinstance(out, str) or not out:
        raise WorkerError("fixtures needs \"out\": the folder to write the fixtures to")
    names = fixture_names(request.get("only"))
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if request.get("independent") or request.get("check"):
        check = independent_fixtures if request.get("independent") else check_fixtures
        bad = check(Path(out), names, log)
        return {"ok": True, "exit_status": 1 if bad else 0, "built": [], "failed": []}
    results, failures = build_fixtures(Path(out), names, bool(request.get("print_tensors")), log)
    return {"ok": True, "exit_status": 1 if any(FAMILIES[n]["required"] for n, _ in failures) else 0,
            "built": [r["name"] for r in results], "failed": [{"name": n, "error": m} for n, m in failures]}


# --------------------------------------------------------------------------------------------
# The protocol loop
# --------------------------------------------------------------------------------------------

def handle(request: dict, measurer: Measurer) -> dict:
    op = request.get("op")
    if op == "hello":
        client = request.get("protocol")
        if client != PROTOCOL:
            raise WorkerError(f"protocol mismatch: this worker speaks {PROTOCOL}, the client {client}; "
                              "run the worker shipped with the same ssm-scope")
        return {"ok": True, "protocol": PROTOCOL, **environment()}
    if op == "measure":
        point, settings, config = request.get("point"), request.get("settings"), request.get("config")
        if not all(isinstance(v, dict) for v in (point, settings, config)):
            raise WorkerError("measure needs \"point\", \"settings\" and \"config\" objects")
        return {"ok": True, "result": measurer.measure(point, settings, config, request.get("memoryLimit"))}
    if op == "fixtures":
        return fixtures_request(request)
    if op == "test_hang" and os.environ.get("SSM_SCOPE_WORKER_TEST") == "1":
        print("test_hang: sleeping until killed", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    raise WorkerError(f"unknown op {op!r}; this worker (protocol {PROTOCOL}) answers hello, measure and fixtures")


def failure(message: str, out_of_memory: bool = False) -> str:
    return json.dumps({"ok": False, "error": message, "out_of_memory": out_of_memory}, separators=(",", ":"))


def exit_with_parent(parent: int) -> None:
    """Ends the worker once ssm-scope has gone (killed mid-point, its requests would never be read)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def serve() -> int:
    """Answers requests from standard input until it ends. Replies go to the original standard output; everything
    else printed (by this file, torch or transformers) goes to standard error."""
    replies = io.open(os.dup(1), "w", encoding="utf-8", closefd=True)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    measurer = Measurer()
    while True:
        line = sys.stdin.buffer.readline().decode("utf-8", errors="replace")
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise WorkerError("malformed request: a request is one JSON object per line")
            reply = handle(request, measurer)
            text = json.dumps(reply, allow_nan=False, separators=(",", ":"))
        except WorkerError as error:
            text = failure(str(error), error.out_of_memory)
        except json.JSONDecodeError as error:
            text = failure(f"malformed request: {error}")
        except Exception as error:  # noqa: BLE001 - report, keep serving
            traceback.print_exc()
            text = failure(one_line(error))
        replies.write(text + "\n")
        replies.flush()


def main(argv: list[str]) -> int:
    if argv[:1] == ["fixtures"]:
        return fixtures_main(argv[1:])
    if argv:
        print("usage: ssm_scope_worker.py            (serve the JSON-lines protocol on stdin/stdout)\n"
              "       ssm_scope_worker.py fixtures [--out DIR] [--only F ...] [--check] [--independent]",
              file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
