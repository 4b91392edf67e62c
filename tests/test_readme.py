"""The README's Python examples run, and print what their comments say they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from wsgraph.cli.main import main

README = Path(__file__).resolve().parent.parent / "README.md"
# `print(...)  # expected output` (the comment is the exact line the call prints).
PRINT_WITH_OUTPUT = re.compile(r"^print\(.*\)\s+#\s(?P<expected>.+)$")


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_readme_has_its_three_examples() -> None:
    assert len(python_blocks()) == 3


@pytest.mark.parametrize("index", [0, 1])
def test_readme_example_prints_what_it_says(index: int) -> None:
    code = python_blocks()[index]
    expected = [match["expected"] for line in code.splitlines() if (match := PRINT_WITH_OUTPUT.match(line))]
    assert expected, "the example documents no output"
    torch.manual_seed(0)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "readme"})
    lines = printed.getvalue().splitlines()
    assert len(lines) == len(expected)
    for line, promise in zip(lines, expected, strict=True):
        if "..." in promise:  # an abbreviated repr: the parts around the ellipsis must appear in order
            pattern = ".*".join(re.escape(part.strip(", ")) for part in promise.split("..."))
            assert re.search(pattern, line), (line, promise)
        else:
            assert line == promise


def test_readme_dataset_example_opens_what_fit_inrs_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    arguments = ["fit-inrs", "--source", "digits", "--out", "data/digits-inrs", "--limit", "6", "--steps", "5"]
    assert main([*arguments, "--no-progress"]) == 0
    namespace: dict = {"__name__": "readme"}
    exec(compile(python_blocks()[2], "README.md python block 3", "exec"), namespace)
    batch = next(iter(namespace["loader"]))
    assert batch.num_graphs == len(namespace["train"]) > 0
    assert batch.y.shape == (batch.num_graphs,)
