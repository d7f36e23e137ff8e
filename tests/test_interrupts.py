"""Ctrl-C at known phases of a job (the process signals itself where IMG2NUM_TEST_INTERRUPT says),
and files that follow the umask."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
from conftest import run_cli

from img2num import interrupts
from img2num.io import atomic_folder, write_json


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("phase", ["trained", "drawing"])
def test_ctrl_c_near_the_end_of_train_keeps_the_old_run(trained_run, tiny_folder, tmp_path, phase):
    run_dir = tmp_path / "runs" / "mlp"
    shutil.copytree(trained_run.path, run_dir)
    before = _snapshot(run_dir)
    env = {**os.environ, interrupts.TEST_HOOK: phase}
    done = subprocess.run(
        [sys.executable, "-m", "img2num", "train", str(tiny_folder), "--model", "mlp", "--epochs", "1",
         "--run", str(run_dir), "--overwrite", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    # One line and 130: no segmentation fault (139), no traceback, not ignored (0). The one-epoch
    # model may also get train's one-line weak-fit warning before the interrupt.
    lines = [line for line in done.stderr.splitlines() if not line.startswith("img2num: warning: ")]
    assert (done.returncode, lines, done.stdout) == (130, ["img2num: error: interrupted; nothing unfinished was left in place"], "")
    assert _snapshot(run_dir) == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["mlp"]  # no .partial left


def test_an_interrupt_inside_a_finalizer_is_not_lost(tmp_path):
    # Python raises KeyboardInterrupt where the signal lands; in a finalizer (or a callback from C,
    # as while matplotlib draws) it is printed as "Exception ignored" and the job runs on.
    code = textwrap.dedent(
        """
        import os, signal, sys
        from img2num import interrupts

        class Finalized:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)

        with interrupts.exit_on_interrupt("img2num: error: interrupted") if sys.argv[1] == "handled" else open(os.devnull):
            Finalized()
            print("went on")
        """
    )
    plain = subprocess.run([sys.executable, "-c", code, "plain"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and plain.stdout == "went on\n" and "Exception ignored" in plain.stderr
    handled = subprocess.run([sys.executable, "-c", code, "handled"], capture_output=True, text=True, timeout=60)
    assert (handled.returncode, handled.stdout, handled.stderr) == (130, "", "img2num: error: interrupted\n")
    # Started with Ctrl-C ignored (a script's background job, nohup), it stays ignored.
    ignoring = subprocess.run(
        [sys.executable, "-c", code, "handled"], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert (ignoring.returncode, ignoring.stdout, ignoring.stderr) == (0, "went on\n", "")


def test_ctrl_c_while_replacing_lets_the_renames_finish(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    with atomic_folder(folder) as tmp:
        (tmp / "model").write_text("old")
    monkeypatch.setenv(interrupts.TEST_HOOK, "replacing")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(folder, overwrite=True) as tmp:
            (tmp / "model").write_text("new")
    # The interrupt came between the renames and waited for them: the new folder is whole.
    assert (folder / "model").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_files_and_folders_follow_the_umask(capsys, trained_run, tiny_folder, tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_folder(tmp_path / "run") as tmp:
            write_json(tmp / "config.json", {})
        status, _, err = run_cli(capsys, "predict", trained_run.path, tiny_folder / "test.npz", "--output", tmp_path / "p.csv")
        assert status == 0, err
        mode = lambda path: stat.S_IMODE(os.stat(path).st_mode)  # noqa: E731
        assert (mode(tmp_path / "run"), mode(tmp_path / "run" / "config.json"), mode(tmp_path / "p.csv")) == (0o750, 0o640, 0o640)
        # A replaced file keeps its own permissions, as a shell's `>` would.
        os.chmod(tmp_path / "p.csv", 0o644)
        status, _, err = run_cli(
            capsys, "predict", trained_run.path, tiny_folder / "test.npz", "--output", tmp_path / "p.csv", "--overwrite"
        )
        assert status == 0 and mode(tmp_path / "p.csv") == 0o644
    finally:
        os.umask(old)


def test_ctrl_c_while_the_program_exits_is_130_with_the_one_line(tmp_path):
    # Python runs its exit handlers (atexit) after the command is done; Ctrl-C there used to print
    # "Exception ignored in atexit callback" and exit 0 (or, later still, end with -2 and no word).
    code = textwrap.dedent(
        """
        import atexit, os, runpy, signal, sys
        atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
        sys.argv = ["img2num", "models"]
        runpy.run_module("img2num", run_name="__main__")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "mlp" in done.stdout
    assert (done.returncode, done.stderr) == (130, "img2num: error: interrupted; nothing unfinished was left in place\n")
