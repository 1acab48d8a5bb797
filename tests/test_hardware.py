import pytest

from ofa_latency.hardware import describe_hardware, load_gpu_specs


def test_gpu_spec_table():
    df = load_gpu_specs()
    for key in ("2080ti", "titan_xp", "v100", "t4", "a10", "a100_40gb", "l4", "h100_sxm", "h200",
                "rtx3090", "rtx4090", "jetson_agx_orin_64gb"):
        assert key in set(df.key), key
    assert (df.memory_bandwidth_gbs > 0).all() and (df.fp32_tflops > 0).all()
    assert df.key.is_unique
    with pytest.raises(FileNotFoundError):
        load_gpu_specs("/nonexistent.csv")


def test_describe_measures_this_machine():
    d = describe_hardware("onnxruntime", threads=1)
    assert d["threads_in_use"] == 1 and d["logical_cores"] >= 1
    assert d["memory_bandwidth_gbs"] > 0.1 and d["matmul_gflops"] > 0.1
