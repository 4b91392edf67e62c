"""The ``wsgraph`` command starts without loading torch, so a Ctrl-C while its commands load
ends it with one line, and ``import wsgraph`` stays cheap while offering wsgraph.core's names."""

import signal
import subprocess
import sys

from wsgraph.cli import main as cli_main


def test_the_entry_point_and_the_package_load_no_torch():
    script = (
        "import inspect, sys, wsgraph, wsgraph.cli.main; hasattr(wsgraph, '__wrapped__'); inspect.unwrap(wsgraph); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_package_offers_core_names_at_first_use():
    import wsgraph.core

    assert wsgraph.__all__ == wsgraph.core.__all__
    assert all(getattr(wsgraph, name) is getattr(wsgraph.core, name) for name in wsgraph.__all__)
    assert set(wsgraph.__all__) <= set(dir(wsgraph)) and wsgraph.layers.__name__ == "wsgraph.layers"
    namespace = {}
    exec("from wsgraph import *", namespace)
    assert {name for name in namespace if not name.startswith("__")} == set(wsgraph.core.__all__)
    try:
        wsgraph.no_such_name  # noqa: B018
    except AttributeError as error:
        assert str(error) == "module 'wsgraph' has no attribute 'no_such_name'"
    else:
        raise AssertionError("an unknown name was found")


def test_a_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main.importlib, "import_module", interrupted)
    assert cli_main.main(["info", "x.pt"]) == 130
    assert capsys.readouterr().err == "wsgraph: interrupted\n"


# Ctrl-C as a command started from a terminal receives it: a test suite run as a background job hands its
# subprocesses SIGINT ignored, which Python then leaves ignored.
TERMINAL_CTRL_C = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"


def test_a_real_ctrl_c_while_the_commands_load_gives_no_traceback():
    # The signal is sent once the command has begun building its parser (it says so on stderr),
    # so it lands while torch and the rest load however slow the machine is.
    script = (
        f"{TERMINAL_CTRL_C}"
        "import sys\n"
        "import wsgraph.cli.main as cli\n"
        "real_build_parser = cli.build_parser\n"
        "def announced_build_parser():\n"
        "    print('loading', file=sys.stderr, flush=True)\n"
        "    return real_build_parser()\n"
        "cli.build_parser = announced_build_parser\n"
        "sys.argv = ['wsgraph', 'info', 'no-such-file.pt']\n"
        "raise SystemExit(cli.main())\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    assert process.stderr.readline() == "loading\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (130, "wsgraph: interrupted\n")


def test_a_ctrl_c_that_a_library_swallows_while_loading_still_ends_the_command():
    # Some libraries' import fallbacks catch the KeyboardInterrupt and go on half-imported; the
    # command must end there with its one line, not fail later with a foreign traceback.
    script = (
        f"{TERMINAL_CTRL_C}"
        "import importlib, signal, sys\n"
        "import wsgraph.cli.main as cli\n"
        "real_import = importlib.import_module\n"
        "def swallowing_import(name):\n"
        "    try:\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "    print('loading went on', file=sys.stderr)\n"
        "    return real_import(name)\n"
        "cli.importlib.import_module = swallowing_import\n"
        "sys.argv = ['wsgraph', 'info', 'no-such-file.pt']\n"
        "raise SystemExit(cli.main())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (130, "wsgraph: interrupted\n")


def test_a_python_caller_keeps_its_own_ctrl_c_handling():
    before = signal.getsignal(signal.SIGINT)
    assert cli_main.main(["info", "no-such-file.pt"]) == 1
    assert signal.getsignal(signal.SIGINT) is before
