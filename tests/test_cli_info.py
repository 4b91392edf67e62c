import contextlib
import json
import os
import re
import threading
import warnings

import pytest
import torch
from mlp_helpers import OutputOffsetMLP, build_mlp

from wsgraph.cli.main import main


@pytest.fixture
def state_dict_file(tmp_path):
    path = tmp_path / "net.pt"
    mlp = build_mlp([2, 12, 12, 1], bias=[True, False, True])
    torch.save({"epoch": 4, "model_state_dict": mlp.state_dict()}, path)
    return path


def test_info_on_a_state_dict(state_dict_file, capsys):
    assert main(["info", str(state_dict_file)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"file        {state_dict_file}" in lines
    assert "content     state_dict with 5 tensors" in lines
    assert "widths      2-12-12-1" in lines
    assert "signature   M=3 weight layers, d_0=2, d_M=1" in lines
    assert "parameters  193 (180 weights, 13 biases)" in lines
    assert "biases      layers 1, 3 (none in 2)" in lines
    assert "activation  unknown (a state_dict does not record it)" in lines
    table = lines[lines.index("") + 1 :]
    assert [row.split() for row in table] == [
        ["layer", "in", "->", "out", "edges", "nodes", "bias"],
        ["0", "input", "-", "0", "2", "-"],
        ["1", "2", "->", "12", "24", "12", "yes"],
        ["2", "12", "->", "12", "144", "12", "no"],
        ["3", "12", "->", "1", "12", "1", "yes"],
    ]


def test_info_json_on_a_saved_module(tmp_path, capsys):
    path = tmp_path / "net.pth"
    torch.save(build_mlp([3, 5, 2], activation=torch.nn.Tanh), path)
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "saved module Sequential"
    assert info["activation"] == "tanh"
    assert info["widths"] == [3, 5, 2]
    # "num_layers" is the old name of "num_weight_layers", kept for one release.
    assert info["signature"] == {"num_weight_layers": 2, "num_layers": 2, "in_dim": 3, "out_dim": 2}
    assert info["num_params"] == 3 * 5 + 5 + 5 * 2 + 2
    assert [layer["edges"] for layer in info["layers"]] == [15, 10]
    assert [layer["nodes"] for layer in info["layers"]] == [5, 2]
    assert info["has_bias"] == [True, True] and info["finite"] is True


def test_info_reports_a_saved_modules_output_offset(tmp_path, capsys):
    path = tmp_path / "inr.pt"
    torch.save(OutputOffsetMLP(), path)
    assert main(["info", "--trust-pickles", str(path)]) == 0
    assert (
        "output      adds 0.5 to the last layer's output (convert with --output-offset 0.5)" in capsys.readouterr().out
    )
    assert main(["info", "--json", "--trust-pickles", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["output_offset"] == 0.5
    plain = tmp_path / "plain.pt"
    torch.save(build_mlp([2, 3, 1]), plain)
    assert main(["info", str(plain)]) == 0
    assert "output " not in capsys.readouterr().out
    torch.save(build_mlp([2, 3, 1]).state_dict(), plain)
    assert main(["info", "--json", str(plain)]) == 0
    assert json.loads(capsys.readouterr().out)["output_offset"] is None


def test_info_reports_non_finite_weights(tmp_path, capsys):
    path = tmp_path / "nan.pt"
    state_dict = build_mlp([2, 3, 1]).state_dict()
    state_dict["0.weight"][0, 0] = float("nan")
    torch.save(state_dict, path)
    assert main(["info", str(path)]) == 0
    assert "dtype       float32, contains NaN or inf" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: None, "no such file"),
        (lambda path: path.write_bytes(b"not a checkpoint"), "corrupt"),
        (lambda path: torch.save(torch.nn.Conv2d(1, 2, 3).state_dict(), path), "'weight': weight has shape"),
    ],
    ids=["missing", "corrupt", "not-an-mlp"],
)
def test_info_errors_are_one_line_with_exit_status_1(tmp_path, capsys, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    assert main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"wsgraph info: error: {path}: ")
    assert message in captured.err


def test_wrong_flag_exits_with_status_2(state_dict_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--tabel", str(state_dict_file)])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --tabel" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["info"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("name", ["fifo.pt", "fifo", "fifo.safetensors"])
def test_info_on_a_named_pipe_is_refused_without_reading_it(tmp_path, capsys, name):
    pipe = tmp_path / name
    os.mkfifo(pipe)  # opening it to read waits for a writer, forever if none comes

    released = []

    def release_a_waiting_reader():
        with contextlib.suppress(OSError):  # nobody is reading: the pipe was refused
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
            released.append(True)

    rescue = threading.Timer(10, release_a_waiting_reader)
    rescue.daemon = True
    rescue.start()
    assert main(["info", str(pipe)]) == 1
    rescue.cancel()
    assert not released, "info waited on the pipe for a writer"
    err = capsys.readouterr().err
    assert err.startswith("wsgraph info: error: ") and str(pipe) in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\x80\x81 junk", "can't decode byte 0x80"), (b"[" * 200_000, "nested too deeply to read")],
    ids=["binary", "nested"],
)
def test_a_damaged_json_file_is_named(tmp_path, content, problem):
    from wsgraph.training.metrics import read_json

    path = tmp_path / "records.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not valid JSON .*{problem}"):
        read_json(path)


def test_a_damaged_file_gives_the_error_alone_without_torchs_pickle_warning(tmp_path, capsys):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x80\x8d" + b"f" * 64)  # "pickle protocol 141": torch warns before it fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["info", str(path)]) == 1
    assert [str(warning.message) for warning in caught] == []
    assert capsys.readouterr().err.startswith(f"wsgraph info: error: {path}: not a readable PyTorch checkpoint")
