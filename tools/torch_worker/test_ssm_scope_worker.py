#!/usr/bin/env python3
"""Unit tests of the worker parts that need no torch: profiler op names -> ssm-scope operator kinds.

Run: python3 tools/torch_worker/test_ssm_scope_worker.py (the Swift suite ScopeTorchTests runs it too).
"""

import re
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ssm_scope_worker as worker  # noqa: E402


def operator_kinds() -> set:
    """The raw values of OperatorKind in Sources/ScopeCost/Operators.swift."""
    text = (HERE.parents[1] / "Sources" / "ScopeCost" / "Operators.swift").read_text()
    body = text[text.index("public enum OperatorKind"):]
    body = body[:body.index("public var category")]
    return {raw or name for name, raw in re.findall(r"case (\w+)(?: = \"(\w+)\")?", body)}


class OpKindTests(unittest.TestCase):
    def kind(self, op, scopes=(), phase="prefill"):
        return worker.op_kind(op, list(scopes), phase)

    def test_gemms_are_linear_outside_attention(self):
        for op in ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul"):
            self.assertEqual(self.kind(op), "linear")
        self.assertEqual(self.kind("aten::addmm", ["linear", "attention"]), "linear")
        self.assertEqual(self.kind("aten::mm", ["mlp"]), "linear")  # fused expert weights

    def test_lm_head_and_embedding(self):
        self.assertEqual(self.kind("aten::linear", ["lm_head"], "decode"), "lm_head")
        self.assertEqual(self.kind(None, ["lm_head"]), "lm_head")
        self.assertEqual(self.kind("aten::embedding", []), "embedding")
        self.assertEqual(self.kind("aten::index_select", ["embedding"]), "embedding")

    def test_attention_by_phase(self):
        self.assertEqual(self.kind("aten::scaled_dot_product_attention"), "attention_prefill")
        self.assertEqual(self.kind("aten::scaled_dot_product_attention", phase="decode"), "attention_decode")
        self.assertEqual(self.kind("aten::softmax", ["attention"]), "attention_prefill")
        self.assertEqual(self.kind("aten::bmm", ["attention"], "decode"), "attention_decode")
        self.assertEqual(self.kind("aten::mul", ["rope", "attention"]), "rope")

    def test_ssm_scans(self):
        self.assertEqual(self.kind("aten::einsum", ["ssm2"]), "ssd_chunk_scan")
        self.assertEqual(self.kind("aten::exp", ["ssm2"], "decode"), "ssd_step")
        self.assertEqual(self.kind(None, ["ssm1"]), "selective_scan")
        self.assertEqual(self.kind("aten::mul", ["ssm1"], "decode"), "selective_step")
        self.assertEqual(self.kind("mamba_chunk_scan_combined"), "ssd_chunk_scan")
        self.assertEqual(self.kind("selective_scan_fwd"), "selective_scan")
        self.assertEqual(self.kind("aten::linear", ["linear", "ssm2"]), "linear")

    def test_conv_and_norms(self):
        self.assertEqual(self.kind("aten::conv1d", ["ssm2"]), "conv1d")
        self.assertEqual(self.kind("aten::conv1d", ["ssm2"], "decode"), "conv_step")
        self.assertEqual(self.kind("causal_conv1d_fwd"), "conv1d")
        self.assertEqual(self.kind("aten::pow", ["rms_norm"]), "rms_norm")
        self.assertEqual(self.kind("aten::rms_norm"), "rms_norm")
        self.assertEqual(self.kind("aten::layer_norm"), "rms_norm")
        self.assertEqual(self.kind("aten::mul", ["gated_rms_norm", "ssm2"]), "gated_rms_norm")

    def test_the_rest(self):
        self.assertEqual(self.kind("aten::add"), "residual_add")
        self.assertEqual(self.kind("aten::add", ["mlp"]), "activation")
        self.assertEqual(self.kind("aten::silu", ["mlp"]), "activation")
        self.assertEqual(self.kind("aten::cat"), "concat")
        self.assertEqual(self.kind("aten::mul"), "activation")
        self.assertEqual(self.kind("aten::topk", ["router", "mlp"]), "router")

    def test_every_answer_is_an_operator_kind(self):
        kinds = operator_kinds()
        self.assertIn("ssd_chunk_scan", kinds)
        ops = [None, "aten::linear", "aten::bmm", "aten::softmax", "aten::conv1d", "aten::add", "aten::cat",
               "aten::rms_norm", "aten::embedding", "mamba_chunk_scan_combined", "selective_scan_fwd", "aten::exp"]
        scopes = [[], ["lm_head"], ["embedding"], ["linear"], ["router"], ["rope"], ["rms_norm"], ["gated_rms_norm"],
                  ["conv1d"], ["ssm1"], ["ssm2"], ["attention"], ["mlp"]]
        for op in ops:
            for scope in scopes:
                for phase in ("prefill", "decode"):
                    self.assertIn(self.kind(op, scope, phase), kinds, (op, scope, phase))


class StatisticsTests(unittest.TestCase):
    def test_matches_swift_statistics(self):
        s = worker.statistics([3.0, 1.0, 2.0, 4.0])
        self.assertEqual(s["count"], 4)
        self.assertEqual(s["median"], 2.5)
        self.assertEqual(s["mean"], 2.5)
        self.assertAlmostEqual(s["stddev"], 1.2909944487358056)
        self.assertEqual((s["min"], s["max"]), (1.0, 4.0))
        self.assertEqual(worker.statistics([5.0])["stddev"], 0.0)


if __name__ == "__main__":
    unittest.main()
