"""The command line's error contract: every user mistake is ``error: ...`` naming the culprit,
exit code 2, no traceback; Ctrl-C is 130; a bug is 1 with a hint to rerun with --debug."""

import json
import signal
import subprocess
import sys
import time

import pytest

from ofa_latency.cli import main

CLI = [sys.executable, "-m", "ofa_latency.cli"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small fake-device table (120 subnets) and a predictor trained on it."""
    d = tmp_path_factory.mktemp("cli")
    data = d / "fake.csv"
    assert main(["profile", "--backend", "fake", "--n", "120", "--seed", "3", "--out", str(data),
                 "--quiet", "--show", "0"]) == 0
    assert main(["train", "--data", str(data), "--param", "n_estimators=20", "--out",
                 str(d / "pred"), "--quiet"]) == 0
    return d


def _arch(mbv3):
    return mbv3.sample(1, seed=0)[0]


def _cases(d, arch):
    empty = d / "empty.csv"
    empty.write_text("")
    torn = d / "torn.csv"
    torn.write_text('arch,image_size,latency_ms\n"{""ks"": [3],1,2\n3,4,5,6,7\n')
    nolat = d / "nolat.csv"
    nolat.write_text("arch,image_size\n" + '"' + arch.arch_json().replace('"', '""') + '",160\n')
    a_file = d / "a_file.txt"
    a_file.write_text("x")
    data, pred = str(d / "fake.csv"), str(d / "pred")
    good = json.dumps(arch.to_dict())
    return [
        (["predict", "--predictor", pred, "--arch", "[1]"], "--arch must be a dict"),
        (["export", "--arch", "[1]", "--out", str(d / "n.onnx")], "--arch must be a dict"),
        (["predict", "--predictor", pred, "--arch", "{not json"], "neither JSON nor a Python"),
        (["predict", "--predictor", pred, "--arch", json.dumps(dict(arch.to_dict(), ks=[9] * 20))],
         "arch['ks'][0] = 9"),
        (["profile", "--backend", "fake", "--n", "0", "--out", str(d / "p.csv")], "--n 0"),
        (["profile", "--backend", "fake", "--n", "0", "--out", str(d / "p.csv")],
         "--n 0"),
        (["profile", "--backend", "fake", "--archs", str(d / "nope.jsonl"), "--out",
          str(d / "p.csv")], "nope.jsonl"),
        (["profile", "--backend", "fake", "--litert-delegate", "none", "--n", "1", "--out",
          str(d / "p.csv")], "--litert-delegate is a LiteRT setting; the backend is fake"),
        (["train", "--data", data, "--param", "n_estimatorz=5", "--out", str(d / "t1")],
         "no parameter 'n_estimatorz'"),
        (["train", "--data", data, "--param", "n_estimators=abc", "--out", str(d / "t2")],
         "n_estimators = 'abc'"),
        (["train", "--data", data, "--param", "n_estimators", "--out", str(d / "t2")],
         "not of the form key=value"),
        (["train", "--data", data, "--model", "svm", "--out", str(d / "t3")],
         "unknown predictor 'svm'"),
        (["train", "--data", data, "--out", str(a_file)], "a_file.txt"),
        (["train", "--data", str(empty), "--out", str(d / "t4")], "empty.csv is empty"),
        (["train", "--data", str(torn), "--out", str(d / "t5")], "torn.csv is not a well-formed"),
        (["evaluate", "--predictor", pred, "--data", str(torn)], "torn.csv is not a well-formed"),
        (["train", "--data", str(d / "missing.csv"), "--out", str(d / "t6")], "missing.csv"),
        (["train", "--data", str(nolat), "--out", str(d / "t7")], "missing columns ['latency_ms']"),
        (["train", "--data", data, "--filter", "nope=1", "--out", str(d / "t8")],
         "filter column 'nope'"),
        (["evaluate", "--predictor", pred, "--data", data, "--filter", "batch_size=7"],
         "0 rows to evaluate"),
        (["evaluate", "--predictor", "./typo_dir", "--data", data],
         "predictor folder not found: ./typo_dir"),
        (["predict", "--predictor", "no_such_predictor", "--arch", good],
         "no shipped predictor called 'no_such_predictor'"),
        (["predict", "--predictor", str(a_file), "--arch", good], "a_file.txt is a file"),
        (["import", "--data", data, "--arch-column", "child_arch", "--out", str(d / "i.csv")],
         "no column 'child_arch'"),
        (["import-help", "--help-dir", str(d / "no_help"), "--out", str(d / "h.csv")],
         "no_help"),
    ]


def test_every_user_mistake_is_exit_2_naming_the_culprit(table, mbv3, capsys):
    for argv, culprit in _cases(table, _arch(mbv3)):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, code, err)
        assert err.startswith("error: ") and culprit in err, (argv, err)
        assert "Traceback" not in err


def test_argparse_mistakes_are_exit_2(capsys):
    assert main(["profile", "--batch-size", "x", "--out", "o.csv"]) == 2
    assert "--batch-size: 'x' is not an integer" in capsys.readouterr().err
    assert main(["hardware", "--threads", "0", "--no-measure"]) == 2
    assert "--threads: 0: must be >= 1" in capsys.readouterr().err
    assert main(["search", "--estimator", "x", "--latency-ms", "5", "--top-k", "0", "--out",
                 "o"]) == 2
    assert "--top-k: 0: must be >= 1" in capsys.readouterr().err
    # search's --estimator is also --predictor, as evaluate and predict name it
    assert main(["search", "--predictor", "no_such_predictor", "--latency-ms", "5", "--out",
                 "o"]) == 2
    assert "no shipped predictor called 'no_such_predictor'" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_debug_shows_the_traceback(table, capsys):
    assert main(["--debug", "predict", "--predictor", str(table / "pred"), "--arch", "[1]"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_is_exit_1_with_a_hint(monkeypatch, capsys):
    import ofa_latency.cli.predictors as cli

    def broken(args):
        raise KeyError("oops")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "unexpected KeyError" in err and "--debug" in err


def test_ctrl_c_is_exit_130(tmp_path):
    out = tmp_path / "r.csv"
    # a suite started in the background by a shell inherits SIGINT ignored, and so would the
    # CLI (Python keeps an ignored SIGINT): give the child the default disposition, as a
    # terminal does
    proc = subprocess.Popen(CLI + ["profile", "--backend", "fake", "--n", "3000", "--out",
                                   str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and out.read_text().count("\n") > 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # say what it was doing
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        pytest.fail(f"profile did not stop within 120 s of Ctrl-C; stderr: {err[-2000:]}")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


def test_a_reader_that_goes_away_is_not_a_bug():
    """``ofa-latency list | head -1``: the pipe closes before the output is written."""
    proc = subprocess.Popen(CLI + ["list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stdout.close()  # before the interpreter has even started
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode in (0, 141), err  # 0 only if it wrote before the close
    assert "Exception ignored" not in err and "unexpected" not in err and "Traceback" not in err


def test_python_dict_arch_as_ofa_prints_it(table, mbv3, capsys):
    a = _arch(mbv3)
    ofa_form = repr({"wid": None, "ks": list(a.ks), "e": list(a.e), "d": list(a.d),
                     "r": [a.image_size]})
    assert main(["predict", "--predictor", str(table / "pred"), "--arch", ofa_form]) == 0
    ms_ofa = float(capsys.readouterr().out.split()[0])
    assert main(["predict", "--predictor", str(table / "pred"), "--arch",
                 json.dumps(a.to_dict())]) == 0
    assert float(capsys.readouterr().out.split()[0]) == ms_ofa


def test_list_shows_every_shipped_predictor(capsys):
    from ofa_latency import list_pretrained

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    entries = list_pretrained()
    assert len(lines) == len(entries) + 5  # header, one per predictor, summary, 3 legend lines
    assert any("_alone" in line and "nothing else running" in line for line in lines)
    for e in entries:
        row = next(line for line in lines if line.startswith(e["name"] + " "))
        assert f"{e['heldout_metrics']['mape_pct']:.2f}" in row
        assert f"{e['heldout_metrics']['kendall_tau']:.3f}" in row
