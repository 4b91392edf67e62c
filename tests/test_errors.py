import pytest

from wsgraph.errors import one_line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("bad flag"), "bad flag"),
        (RuntimeError("\n  first line\nsecond line\n"), "first line"),
        (KeyError(), "KeyError"),
        (OSError("   "), "OSError"),
    ],
)
def test_one_line(error, expected):
    assert one_line(error) == expected
