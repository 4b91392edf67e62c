import json

from wsgraph.cli.main import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_checks_pass_and_save_the_drawing(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--seed", "3"]) == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    networks = summary["networks"]
    assert [row["activation"] for row in networks] == ["relu", "tanh", "sine(30.0)", "unknown"]
    assert all(row["round_trip_exact"] and row["rebuilt_max_error"] == 0.0 for row in networks)
    assert all(0 < row["weights_moved"] <= 1 and row["permuted_max_error"] < 1e-5 for row in networks)
    assert summary["batch"]["num_graphs"] == 4 and summary["batch"]["loader_batches"] == 2
    assert summary["stacked"]["round_trip_exact"]
    assert (out_dir / "network.png").read_bytes()[:8] == PNG_SIGNATURE
    assert summary["drawing"] == str(out_dir / "network.png")
    printed = capsys.readouterr().out
    assert "relu, no bias in layer 2" in printed and "round trip exact" in printed
