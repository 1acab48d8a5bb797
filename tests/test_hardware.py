import pytest

from ofa_latency.hardware import describe_hardware, load_gpu_specs


def test_gpu_spec_table():
    df = load_gpu_specs()
    for key in ("2080ti", "titan_xp", "v100", "t4", "a10", "a100_40gb", "l4", "h100_sxm", "h200",
                "rtx3090", "rtx4090", "jetson_agx_orin_64gb", "titan_rtx", "rtx2060", "rtx2070",
                "rtx2080", "rtx3060", "rtx3070", "rtx3080", "rtx4060", "rtx4070", "rtx4080",
                "jetson_agx_xavier_32gb", "jetson_xavier_nx_8gb", "jetson_orin_nx_16gb",
                "jetson_orin_nano_8gb"):
        assert key in set(df.key), key
    assert (df.memory_bandwidth_gbs > 0).all() and (df.fp32_tflops > 0).all()
    assert df.source.str.len().gt(10).all()  # every row says where its numbers come from
    # fp32 throughput agrees with cores x clock x 2 (a typo check on the spec sheets)
    implied = df.cuda_cores * df.boost_clock_mhz * 2 / 1e6
    assert ((df.fp32_tflops / implied - 1).abs() < 0.12).all(), df[["key", "fp32_tflops"]]
    assert df.key.is_unique
    with pytest.raises(FileNotFoundError):
        load_gpu_specs("/nonexistent.csv")


def test_describe_measures_this_machine():
    d = describe_hardware("onnxruntime", threads=1)
    assert d["threads_in_use"] == 1 and d["logical_cores"] >= 1
    assert d["memory_bandwidth_gbs"] > 0.1 and d["matmul_gflops"] > 0.1
