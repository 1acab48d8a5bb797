import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from ofa_latency.cli import main
from ofa_latency.errors import UsageError

CLI = [sys.executable, "-m", "ofa_latency.cli"]


def test_profile_fake_prints_table(tmp_path, capsys):
    out = tmp_path / "demo.csv"
    assert main(["profile", "--backend", "fake", "--n", "4", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "4 subnets of ofa_mbv3_w1.2" in text and "latency_ms" in text
    assert "others_busy_pct" in text  # each row: how busy other processes kept the CPUs
    assert len(pd.read_csv(out)) == 4


def test_profile_archs_jsonl_both_forms(tmp_path, mbv3, capsys):
    s = mbv3.sample(2, seed=9)
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(s[0].to_dict()) + "\n" + json.dumps(s[1].to_tutorial_dict()) + "\n")
    out = tmp_path / "o.csv"
    assert main(["profile", "--backend", "fake", "--archs", str(f), "--out", str(out),
                 "--quiet"]) == 0
    assert set(pd.read_csv(out).arch) == {x.arch_json() for x in s}
    # the Python-dict form OFA prints is accepted too
    f.write_text(repr(dict(s[0].to_tutorial_dict(), wid=None)) + "\n")
    assert main(["profile", "--backend", "fake", "--archs", str(f), "--out", str(out),
                 "--quiet"]) == 0


def test_profile_retime_above_re_times_the_noisy_rows_of_the_table(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["profile", "--backend", "fake", "--n", "3", "--out", str(out), "--quiet"]) == 0
    raw = pd.read_csv(out)
    raw.loc[0, "ci_pct"] = 40.0
    raw.to_csv(out, index=False)
    assert main(["profile", "--backend", "fake", "--out", str(out), "--retime-above", "5",
                 "--quiet"]) == 0
    assert "3 subnets of ofa_mbv3_w1.2" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 4  # the one noisy row measured again, none sampled
    # 0: a second pass over every subnet of the table, each subnet's rows combined
    assert main(["profile", "--backend", "fake", "--out", str(out), "--retime-above", "0",
                 "--quiet"]) == 0
    from ofa_latency.datasets import read_measurements

    rows, table = pd.read_csv(out), read_measurements(out)
    assert len(rows) == 7 and len(table) == 3
    assert (table.set_index("arch")["n_runs"].sort_index()
            == rows.groupby("arch")["n_runs"].sum().sort_index()).all()
    assert main(["profile", "--backend", "fake", "--out", str(out), "--retime-above", "-1",
                 "--quiet"]) == 2
    assert "must be a finite number >= 0" in capsys.readouterr().err
    assert main(["profile", "--backend", "fake", "--out", str(tmp_path / "none.csv"),
                 "--retime-above", "5", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_profile_windows_auto_says_what_it_chose(tmp_path, capsys):
    out = tmp_path / "auto.csv"
    assert main(["profile", "--backend", "fake", "--n", "12", "--windows", "auto", "--out",
                 str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    # the fake device's preparations do not differ: after the first six subnets, two windows
    # only for the check every fifth subnet
    assert "windows auto: 7 of 12 subnets timed in two windows" in text
    rows = pd.read_csv(out)
    assert rows["window_sd_pct"].notna().sum() == 7
    assert main(["profile", "--backend", "fake", "--n", "2", "--windows", "two", "--out",
                 str(out), "--quiet"]) == 2
    assert "'two' is not an integer" in capsys.readouterr().err
    assert main(["profile", "--backend", "fake", "--n", "2", "--windows", "auto",
                 "--target-ci-pct", "0", "--out", str(tmp_path / "b.csv"), "--quiet"]) == 2
    assert "cannot be 0" in capsys.readouterr().err


def test_profile_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["profile", "--backend", "fake", "--threads", "0", "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert "--threads: 0: must be >= 1" in capsys.readouterr().err
    out = tmp_path / "j.csv"
    for jobs in ("-1", "always"):  # --convert-jobs: an int >= 0 or auto
        assert main(["profile", "--backend", "fake", "--n", "2", "--out", str(out),
                     "--convert-jobs", jobs, "--quiet"]) == 2
        assert "--convert-jobs" in capsys.readouterr().err
    assert main(["profile", "--backend", "fake", "--n", "2", "--out", str(out),
                 "--convert-jobs", "AUTO", "--quiet"]) == 0
    assert len(pd.read_csv(out)) == 2


def test_resume_after_a_real_kill(tmp_path):
    out = tmp_path / "r.csv"
    cmd = CLI + ["profile", "--backend", "fake", "--n", "400", "--seed", "1", "--out", str(out),
                 "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") > 30:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(pd.read_csv(out))
    assert 0 < n_before < 400, "the run should have been interrupted part-way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    df = pd.read_csv(out)
    assert len(df) == 400
    assert not df.duplicated(["arch", "image_size"]).any()


def test_export_round_trip(tmp_path, smallest, capsys):
    out = tmp_path / "net.onnx"
    assert main(["export", "--arch", json.dumps(smallest.to_tutorial_dict()), "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    diff = float(text.split("max abs difference")[1])
    assert diff < 1e-3 and "top-1 agreement 100 %" in text
    cfg = json.loads((tmp_path / "net.config.json").read_text())
    assert cfg["arch"]["image_size"] == 128 and cfg["net_config"]["name"] == "MobileNetV3"
    import onnx

    onnx.checker.check_model(str(out))


def test_hardware_json(capsys):
    assert main(["hardware", "--json", "--no-measure"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["logical_cores"] >= 1 and d["threads_in_use"] == 1 and d["memory_gb"] > 0


def test_import_help(tmp_path, help_dir, capsys):
    out = tmp_path / "h.csv"
    assert main(["import-help", "--help-dir", str(help_dir), "--setting", "v100_32",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert (df.batch_size == 32).all() and len(df) > 4900


def test_train_evaluate_predict(tmp_path, capsys):
    data = tmp_path / "fake.csv"
    assert main(["profile", "--backend", "fake", "--n", "120", "--seed", "2", "--out", str(data),
                 "--quiet", "--show", "0"]) == 0
    assert main(["profile", "--backend", "fake", "--batch-size", "8", "--n", "5", "--out",
                 str(data), "--quiet", "--show", "0"]) == 2
    assert "another setting" in capsys.readouterr().err
    assert main(["profile", "--backend", "fake", "--batch-size", "8", "--n", "5", "--out",
                 str(data), "--quiet", "--show", "0", "--allow-mixed-settings"]) == 0
    capsys.readouterr()
    # two settings in one table: training must ask for a filter
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "p")]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--filter", "batch_size=1", "--model", "xgb",
                 "--param", "n_estimators=50", "--out", str(tmp_path / "p"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "MAPE" in text and "Kendall tau" in text
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["params"]["n_estimators"] == 50
    assert cfg["metadata"]["setting"]["backend"] == "fake"
    assert cfg["metadata"]["heldout_metrics"]["n"] > 5
    plot = tmp_path / "s.png"
    assert main(["evaluate", "--predictor", str(tmp_path / "p"), "--data", str(data),
                 "--filter", "batch_size=1", "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 1000
    # a mixed table must be filtered to one setting before evaluating
    assert main(["evaluate", "--predictor", str(tmp_path / "p"), "--data", str(data)]) == 2
    assert "batch_size" in capsys.readouterr().err
    capsys.readouterr()
    arch = pd.read_csv(data).iloc[0]
    a = json.loads(arch.arch)
    a["image_size"] = int(arch.image_size)
    assert main(["predict", "--predictor", str(tmp_path / "p"), "--arch", json.dumps(a)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.split()[1] == "ms" and "90 % interval" in out  # held-out rows calibrate it
    # search's name for the same option answers the same
    assert main(["predict", "--estimator", str(tmp_path / "p"), "--arch", json.dumps(a)]) == 0
    assert capsys.readouterr().out.strip() == out


def test_evaluate_warns_on_another_setting(tmp_path, capsys, caplog):
    a, b = tmp_path / "b1.csv", tmp_path / "b8.csv"
    for path, batch in ((a, "1"), (b, "8")):
        assert main(["profile", "--backend", "fake", "--n", "40", "--seed", "2", "--batch-size",
                     batch, "--out", str(path), "--quiet", "--show", "0"]) == 0
    assert main(["train", "--data", str(a), "--param", "n_estimators=10", "--out",
                 str(tmp_path / "p"), "--quiet"]) == 0
    caplog.clear()
    assert main(["evaluate", "--predictor", str(tmp_path / "p"), "--data", str(a)]) == 0
    assert "another setting" not in caplog.text
    assert main(["evaluate", "--predictor", str(tmp_path / "p"), "--data", str(b)]) == 0
    assert "another setting" in caplog.text and "batch_size: 1 -> 8" in caplog.text


def test_hardware_prints_the_reference_fingerprint(capsys, mbv3):
    from ofa_latency import create_backend
    from ofa_latency.profiling import reference_subnet

    assert main(["hardware", "--backend", "fake", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    true = create_backend("fake").true_latency_ms(mbv3, reference_subnet(mbv3))
    assert d["reference_subnet_ms"] == pytest.approx(true, rel=0.03)
    assert "176 px" in d["reference_subnet"]


def test_import_honours_space_and_a_split_the_user_brings(tmp_path, capsys):
    from ofa_latency import get_space
    from ofa_latency.datasets import read_measurements

    sp = get_space("ofa_mbv3_w1.0")
    subs = sp.sample(12, seed=1)
    theirs = tmp_path / "theirs.csv"
    pd.DataFrame({"arch": [json.dumps(s.to_dict()) for s in subs],
                  "lat": [1.0 + 0.1 * i for i in range(12)]}).to_csv(theirs, index=False)
    out = tmp_path / "w10.csv"
    assert main(["import", "--data", str(theirs), "--latency-column", "lat", "--set",
                 "space=ofa_mbv3_w1.0", "split=train", "--out", str(out)]) == 0
    df = read_measurements(out)
    assert set(df.space) == {"ofa_mbv3_w1.0"} and set(df.split) == {"train"}
    assert main(["import", "--data", str(theirs), "--latency-column", "lat", "--space",
                 "ofa_mbv3_w1.2", "--set", "space=ofa_mbv3_w1.0", "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert "disagree" in capsys.readouterr().err
    # every row is train: the default split has nothing to hold out and says what to do
    assert main(["train", "--data", str(out), "--model", "table", "--out",
                 str(tmp_path / "p")]) == 2
    assert "--split all" in capsys.readouterr().err
    assert main(["train", "--data", str(out), "--model", "table", "--split", "all", "--out",
                 str(tmp_path / "p")]) == 0
    assert "fitted on 12 subnets (all rows; none held out)" in capsys.readouterr().out


def test_sample_within_chosen_resolutions(tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--n", "20", "--resolutions", "160,192", "--out", str(out)]) == 0
    sizes = {json.loads(line)["image_size"] for line in out.read_text().splitlines()}
    assert sizes <= {160, 192} and len(sizes) == 2
    assert main(["sample", "--n", "5", "--resolutions", "161", "--out", str(tmp_path / "t")]) == 2
    assert "161" in capsys.readouterr().err


def test_finetune_warns_on_few_and_degenerate_samples(tmp_path, capsys):
    data = tmp_path / "few.csv"
    assert main(["profile", "--backend", "fake", "--n", "3", "--out", str(data), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["finetune", "--base", "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_xgb", "--data",
                 str(data), "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    assert "warning: only 3 measured subnets" in out
    flat = tmp_path / "flat.csv"
    df = pd.read_csv(data)
    pd.concat([df] * 1).assign(latency_ms=5.0, ratio="").to_csv(flat, index=False)
    assert main(["finetune", "--base", "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_xgb", "--data",
                 str(flat), "--out", str(tmp_path / "ft2")]) == 0
    out = capsys.readouterr().out
    assert "latencies are equal" in out and "chosen: scale" in out


def test_quiet_prints_no_info_lines(tmp_path):
    r = subprocess.run(CLI + ["profile", "--backend", "fake", "--n", "3", "--quiet", "--out",
                              str(tmp_path / "q.csv")], capture_output=True, text=True)
    assert r.returncode == 0 and "INFO" not in r.stderr, r.stderr
    r = subprocess.run(CLI + ["profile", "--backend", "fake", "--n", "3", "--out",
                              str(tmp_path / "q.csv")], capture_output=True, text=True)
    assert "INFO" in r.stderr  # without --quiet the progress is logged


def test_the_libraries_info_lines_show_only_with_verbose():
    """The package's INFO lines are the user's; a converter's or Ray's are not, unless -v."""
    script = ("import logging, sys\nfrom ofa_latency.cli import main\n"
              "assert main(sys.argv[1:] + ['list']) == 0\n"
              "logging.getLogger('ofa_latency.x').info('OWN-INFO')\n"
              "logging.getLogger('a_converter').info('LIB-INFO')\n"
              "logging.getLogger('a_converter').warning('LIB-WARNING')\n")
    for argv, lib_info in (([], False), (["-v"], True)):
        r = subprocess.run([sys.executable, "-c", script] + argv, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        assert "OWN-INFO" in r.stderr and "LIB-WARNING" in r.stderr, r.stderr
        assert ("LIB-INFO" in r.stderr) == lib_info, r.stderr


def test_demo_refuses_bad_sizes_at_once(tmp_path, capsys):
    t0 = time.perf_counter()
    for n in ("0", "-1", "3"):
        assert main(["demo", "--n", n, "--out", str(tmp_path / "d")]) == 2
    assert time.perf_counter() - t0 < 5
    assert "at least 5" in capsys.readouterr().err


def test_demo_profiles_verifies_and_deploys_the_runtime_it_is_given(tmp_path, monkeypatch,
                                                                     capsys):
    """``demo --backend/--precision`` hands the library workflow that setting's backend (and
    ``--convert-jobs``); a setting that does not exist is refused as a usage error."""
    import ofa_latency.demo as demo

    seen = {}

    def fake_run_demo(out, backend=None, convert_jobs=None, **kw):
        seen.update(backend=(backend.name, backend.precision, backend.threads),
                    convert_jobs=convert_jobs)
        raise UsageError("stop here")

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    out = str(tmp_path / "d")
    assert main(["demo", "--backend", "onnxruntime", "--precision", "int8", "--out", out]) == 2
    assert seen == {"backend": ("onnxruntime", "int8", 1), "convert_jobs": "auto"}
    assert main(["demo", "--out", out, "--convert-jobs", "0"]) == 2
    assert seen == {"backend": ("onnxruntime", "fp32", 1), "convert_jobs": 0}
    seen.clear()
    assert main(["demo", "--backend", "torch", "--precision", "int8", "--out", out]) == 2
    assert not seen and "backend 'torch' supports" in capsys.readouterr().err


def test_search_without_export_imports_neither_torch_nor_xgboost(tmp_path):
    """The command line answers quickly: a shipped xgb predictor loads from its compiled table,
    OFA's accuracy predictor from its cached arrays, the net config comes from the shipped
    template, nothing builds the supernet."""
    import numpy as np
    import torch

    from ofa_latency.search import OFAAccuracyPredictor

    rng = np.random.default_rng(0)
    shapes = {"0.weight": (400, 128), "0.bias": (400,), "2.weight": (400, 400),
              "2.bias": (400,), "4.weight": (400, 400), "4.bias": (400,),
              "6.weight": (1, 400), "6.bias": (1,)}
    acc = tmp_path / "acc.pth"
    torch.save({k: torch.from_numpy(rng.normal(0, 0.05, v).astype(np.float32))
                for k, v in shapes.items()}, acc)
    OFAAccuracyPredictor.load(acc)  # the first read caches it (the user's first search)
    code = ("import sys; from ofa_latency.cli import main; "
            f"rc = main(['search', '--estimator', 'help_v100_64_xgb', '--latency-ms', '25', "
            f"'--accuracy-predictor', {str(acc)!r}, "
            f"'--no-export', '--quiet', '--out', {str(tmp_path / 's')!r}]); "
            "print(rc, sorted(m for m in ('torch', 'xgboost', 'sklearn', 'ofa') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stdout + r.stderr
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["net_config"]["blocks"]  # OFA's net config, written without the supernet
    # the MACs proxy too: its costs come from the shipped layer shapes
    code = code.replace(f"'--accuracy-predictor', {str(acc)!r}, ", "'--proxy', 'macs', ")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stdout + r.stderr


def test_finetune_without_a_base_uses_every_shipped_predictor_of_the_device_type(tmp_path,
                                                                                 capsys):
    from ofa_latency import list_pretrained

    data = tmp_path / "dev.csv"
    assert main(["profile", "--backend", "fake", "--n", "15", "--seed", "8", "--out", str(data),
                 "--quiet", "--rounds", "2", "--max-rounds", "2"]) == 0
    capsys.readouterr()
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    cpu = [e["name"] for e in list_pretrained()
           if e["device_type"] == "cpu" and e["space"] == "ofa_mbv3_w1.2"]
    base = out.split("base: ")[1].split()[0]
    assert base in cpu and "mix" in out  # the others are offered as a mix
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["metadata"]["adaptation"]["base"] == base


def test_timing_options_reach_the_protocol():
    from ofa_latency.cli import build_parser
    from ofa_latency.cli._common import timing_protocol

    def proto(*extra):
        return timing_protocol(build_parser().parse_args(["profile", "--out", "t.csv",
                                                          *extra]))

    assert proto().busy_retry_pct == 20.0 and proto().off_state_retries == 2
    assert proto("--busy-retry-pct", "0").busy_retry_pct is None  # never
    assert proto("--busy-retry-pct", "35", "--off-state-wait-s", "4").busy_retry_pct == 35.0
    assert proto("--off-state-wait-s", "4").off_state_wait_s == 4.0
