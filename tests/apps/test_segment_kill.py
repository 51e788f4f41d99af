"""``segment`` killed at random moments (SIGTERM, SIGKILL) never leaves a half-written output.

One helper process imports the pipeline once, then forks one ``xmask3d segment`` run per trial
(``cli.main``, exactly what the console script runs), so that a trial costs the run itself and
not the several seconds of importing torch. The test kills each run after a seeded random delay
within the length of an unkilled run and checks the output folder: every output file that exists
loads completely; after SIGTERM no temporary file remains either (SIGTERM unwinds through
``atomic_write``); after SIGKILL a hidden ``.<name>.*.tmp`` may remain, nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from xmask3d.data.ply import read_ply

OUTPUTS = {"segmentation.ply", "segmentation.png", "segment.json"}

_FORK_SERVER = r"""
import json, os, sys, time
import xmask3d.apps.inference, xmask3d.apps.render, xmask3d.eval.scoring  # import once
from xmask3d.cli import main
argv = json.loads(sys.argv[1])
for line in sys.stdin:
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)      # the run's summary: not our pipe
        os._exit(main([*argv, "--out", line.strip()]))
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps([status, time.perf_counter() - t0]), flush=True)
"""


def _check_outputs(out, *, num_points: int, temporaries_allowed: bool) -> set[str]:
    """Every output present loads completely; returns the names present."""
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    temporaries = {n for n in names if n.startswith(".") and n.endswith(".tmp")}
    assert not temporaries or temporaries_allowed, f"temporary files left: {temporaries}"
    assert names - temporaries <= OUTPUTS, f"unexpected files: {names - temporaries - OUTPUTS}"
    if "segmentation.ply" in names:
        assert read_ply(out / "segmentation.ply").num_points == num_points
    if "segmentation.png" in names:
        with Image.open(out / "segmentation.png") as img:
            img.load()
    if "segment.json" in names:
        assert json.loads((out / "segment.json").read_text())["num_points"] == num_points
    return names - temporaries


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killed_segment_leaves_only_complete_outputs(room_ply, micro_ckpt, tmp_path):
    argv = ["segment", str(room_ply), "--classes", "floor, wall, table", "--ckpt",
            str(micro_ckpt), "--no-2d", "--no-progress"]      # --no-2d: the fastest path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-c", _FORK_SERVER, json.dumps(argv)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env)
    num_points = read_ply(room_ply).num_points
    rng = np.random.default_rng(17)

    def trial(out, sig: int | None, delay: float) -> tuple[int, float]:
        server.stdin.write(f"{out}\n")
        server.stdin.flush()
        pid = int(server.stdout.readline())
        if sig is not None:
            time.sleep(delay)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:      # it had already finished
                pass
        status, seconds = json.loads(server.stdout.readline())
        return status, seconds

    try:
        status, full = trial(tmp_path / "complete", None, 0.0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        print(f"an unkilled run took {full:.2f} s")
        assert _check_outputs(tmp_path / "complete", num_points=num_points,
                              temporaries_allowed=False) == OUTPUTS
        for k, sig in enumerate([signal.SIGTERM, signal.SIGKILL] * 2):
            out = tmp_path / f"killed_{k}"
            status, _ = trial(out, sig, float(rng.uniform(0.0, full)))
            if os.WIFEXITED(status):        # SIGTERM: unwound and exited with 128 + 15
                assert os.WEXITSTATUS(status) in (0, 128 + signal.SIGTERM)
            else:
                assert os.WTERMSIG(status) == sig
            _check_outputs(out, num_points=num_points,
                           temporaries_allowed=sig == signal.SIGKILL)
    finally:
        server.stdin.close()
        server.wait(timeout=60)
