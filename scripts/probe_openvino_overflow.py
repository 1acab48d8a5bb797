"""OpenVINO int8 agreement with PyTorch fp32, with NNCF's default overflow fix (first layer)
and with it on every layer (what the product does on CPUs without VNNI).

    python scripts/probe_openvino_overflow.py
"""
import json, sys
import ofa_latency.profiling.conversions as conv
from ofa_latency import get_space
from ofa_latency.profiling import create_backend
from ofa_latency.profiling.runtimes import check_conversion
mb = get_space("ofa_mbv3_w1.2")
subs = [mb.validate({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 128})] + mb.sample(2, seed=0)
orig = conv._overflow_fix
out = {"vnni": conv.cpu_has_vnni()}
for name, fix in (("default (first layer)", lambda nncf: {}), ("every layer", None)):
    if fix is None:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
        fix = lambda nncf: {"advanced_parameters": AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)}
    conv._overflow_fix = fix
    conv.CACHE.take()
    be = create_backend("openvino", threads=1, precision="int8")
    out[name] = [{k: round(v, 4) for k, v in check_conversion(be, mb, s, n_images=8).items() if k != "n"} for s in subs]
print(json.dumps(out))
