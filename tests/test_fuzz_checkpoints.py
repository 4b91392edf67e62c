"""Corrupted checkpoint and shard bytes: every reader refuses them cleanly, quickly, in one line.

The counts below are what docs/reliability.md quotes; a test checks that it does.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import random
import sys
import time
from pathlib import Path

import pytest
import torch
from mlp_helpers import build_mlp
from torch import Tensor, nn

from wsgraph import CheckpointError, load_network_file
from wsgraph.cli.main import main
from wsgraph.core.network_files import CHECKPOINT_SUFFIXES
from wsgraph.datasets.store import Shard, read_shard, write_shard

# Per valid file: cuts at evenly spread offsets, single flipped bits, and spans of random bytes written over it.
TRUNCATIONS_PER_FILE = 32
BIT_FLIPS_PER_FILE = 64
OVERWRITES_PER_FILE = 16
# Files of random bytes, of random lengths up to 4 KB.
RANDOM_FILES = 16
VALID_FILES = ("state_dict.pt", "module.pt", "weights.safetensors", "shard.pt")
CORRUPTED_FILES = len(VALID_FILES) * (TRUNCATIONS_PER_FILE + BIT_FLIPS_PER_FILE + OVERWRITES_PER_FILE) + RANDOM_FILES
SUFFIXES = sorted(CHECKPOINT_SUFFIXES)
# Every corrupted file is read under each checkpoint extension, and once more as a shard.
READS = CORRUPTED_FILES * (len(SUFFIXES) + 1)
# One read taking this long is a hang or a runaway allocation in the making (a read takes milliseconds;
# the margin is for a loaded CI machine's pauses); the whole test takes about 6 s.
SECONDS_PER_READ = 10.0
RELIABILITY_DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


def valid_files(folder: Path) -> dict[str, bytes]:
    """The bytes of one file of each kind the fuzzing starts from."""
    files = {}
    path = folder / "seed.pt"
    torch.save(build_mlp([2, 8, 8, 1], seed=1).state_dict(), path)
    files["state_dict.pt"] = path.read_bytes()
    torch.save(build_mlp([2, 6, 1], activation=nn.Tanh, seed=2), path)
    files["module.pt"] = path.read_bytes()
    if importlib.util.find_spec("safetensors") is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in build_mlp([3, 5, 2], seed=3).state_dict().items()}, str(path))
        files["weights.safetensors"] = path.read_bytes()
    generator = torch.Generator().manual_seed(4)
    shard = Shard(
        [torch.randn(3, 4, 2, generator=generator), torch.randn(3, 1, 4, generator=generator)],
        [torch.randn(3, 4, generator=generator), torch.randn(3, 1, generator=generator)],
        torch.tensor([0, 1, 2]),
        torch.tensor([0, 1, 2], dtype=torch.uint8),
        torch.arange(3),
        {"psnr": torch.rand(3, generator=generator)},
    )
    files["shard.pt"] = write_shard(folder / "store", 0, shard).read_bytes()
    return files


def corruptions(name: str, data: bytes) -> list[tuple[str, bytes]]:
    """Deterministic damaged copies of ``data``, each with a label saying what was done."""
    rng = random.Random(f"{name}:{len(data)}")
    cases = []
    for offset in sorted({round(i * len(data) / TRUNCATIONS_PER_FILE) for i in range(TRUNCATIONS_PER_FILE)}):
        cases.append((f"{name} cut at {offset}", data[:offset]))
    for _ in range(BIT_FLIPS_PER_FILE):
        position, bit = rng.randrange(len(data)), rng.randrange(8)
        flipped = bytearray(data)
        flipped[position] ^= 1 << bit
        cases.append((f"{name} bit {bit} of byte {position} flipped", bytes(flipped)))
    for _ in range(OVERWRITES_PER_FILE):
        position, length = rng.randrange(len(data)), rng.randint(1, 64)
        span = rng.randbytes(length)
        cases.append(
            (f"{name} {length} random bytes at {position}", data[:position] + span + data[position + length :])
        )
    return cases


def all_cases(folder: Path) -> list[tuple[str, bytes]]:
    cases = [case for name, data in valid_files(folder).items() for case in corruptions(name, data)]
    rng = random.Random("random files")
    cases += [(f"random file {n}", rng.randbytes(rng.randint(0, 4096))) for n in range(RANDOM_FILES)]
    return cases


def is_valid_content(content: object) -> bool:
    if isinstance(content, nn.Module):
        return True
    return isinstance(content, dict) and bool(content) and all(isinstance(v, Tensor) for v in content.values())


def test_the_case_counts_add_up(tmp_path):
    cases = all_cases(tmp_path)
    safetensors = importlib.util.find_spec("safetensors") is not None
    skipped = 0 if safetensors else TRUNCATIONS_PER_FILE + BIT_FLIPS_PER_FILE + OVERWRITES_PER_FILE
    assert len(cases) == CORRUPTED_FILES - skipped
    assert len({data for _, data in cases}) > 0.95 * len(cases)


# A flipped byte can make the header declare any pickle protocol, which torch warns about before refusing.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupted_files_are_refused_cleanly(tmp_path, capsys):
    cases = all_cases(tmp_path)
    # A hang would stall the whole run: fail it loudly instead, with every thread's traceback.
    faulthandler.dump_traceback_later(300, exit=True, file=sys.__stderr__)
    started = time.perf_counter()
    slowest = (0.0, "")
    outcomes = {"refused": 0, "loaded": 0}
    try:
        for number, (label, data) in enumerate(cases):
            for suffix in SUFFIXES:
                path = tmp_path / f"case{number}{suffix}"
                path.write_bytes(data)
                begun = time.perf_counter()
                try:
                    content = load_network_file(path)
                except CheckpointError as error:
                    message = str(error)
                    assert "\n" not in message and message.startswith(f"{path}: "), (label, message)
                    outcomes["refused"] += 1
                else:
                    assert is_valid_content(content), (label, suffix, type(content))
                    outcomes["loaded"] += 1
                slowest = max(slowest, (time.perf_counter() - begun, f"{label} as {suffix}"))
                if suffix == (Path(label.split()[0]).suffix or ".pt"):
                    status = main(["info", str(path)])
                    captured = capsys.readouterr()
                    assert status in (0, 1), (label, status)
                    if status == 1:
                        assert captured.err.count("\n") == 1, (label, captured.err)
                        assert captured.err.startswith(f"wsgraph info: error: {path}: "), (label, captured.err)
                path.unlink()
            path = tmp_path / "store" / f"shard{number}.pt"
            path.write_bytes(data)
            begun = time.perf_counter()
            try:
                read_shard(path)
            except ValueError as error:
                message = str(error)
                assert "\n" not in message and message.startswith(f"{path}: "), (label, message)
            slowest = max(slowest, (time.perf_counter() - begun, f"{label} as a shard"))
            path.unlink()
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert slowest[0] < SECONDS_PER_READ, slowest
    assert time.perf_counter() - started < 120
    # Most damage must be caught; a flipped bit inside a weight's bytes still loads, legitimately.
    assert outcomes["refused"] > outcomes["loaded"] > 0


def test_the_reliability_doc_quotes_these_counts():
    text = RELIABILITY_DOC.read_text()
    for count in (CORRUPTED_FILES, READS, TRUNCATIONS_PER_FILE, BIT_FLIPS_PER_FILE, OVERWRITES_PER_FILE, RANDOM_FILES):
        assert f"{count:,}" in text, count


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_an_empty_file_is_refused_under_every_extension(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"corrupt|truncated") as error:
        load_network_file(path)
    assert str(error.value).startswith(f"{path}: ")
