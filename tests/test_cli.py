"""The command line: ``--help`` and refusals of bad input come before torch is imported.

Not a timing test: it checks, in a fresh interpreter, which modules are loaded after each
call. Importing torch, diffusers and transformers takes seconds; everything else is quick.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
from plyfile import PlyData, PlyElement

from xmask3d.data.ply import write_ply

HEAVY = ("torch", "diffusers", "transformers", "spconv", "scipy", "matplotlib")

_PROBE = r"""
import contextlib, io, json, sys
from xmask3d.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:             # --help and argparse errors
            code = exc.code
    heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
    results.append({"code": code, "err": err.getvalue(), "heavy": heavy})
print(json.dumps(results))
"""


def _probe(cases: list[list[str]]) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases), json.dumps(HEAVY)],
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.splitlines()[-1])


def test_help_of_every_command_imports_no_heavy_library():
    from xmask3d.cli import build_parser

    commands = list(build_parser()._subparsers._group_actions[0].choices)
    assert {"segment", "query", "train", "eval", "demo", "synth"} <= set(commands)
    results = _probe([["--help"]] + [[c, "--help"] for c in commands])
    for argv, r in zip([["--help"]] + [[c, "--help"] for c in commands], results, strict=True):
        assert r["code"] == 0 and r["heavy"] == [], (argv, r)


def test_bad_input_is_refused_before_heavy_imports(tmp_path):
    text_ply, empty, nan_ply = tmp_path / "text.ply", tmp_path / "empty.ply", tmp_path / "nan.ply"
    text_ply.write_text("these are not points\n")
    empty.write_bytes(b"")
    table = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    table["y"][1] = np.nan
    PlyData([PlyElement.describe(table, "vertex")]).write(str(nan_ply))
    room_ply = tmp_path / "room.ply"
    write_ply(room_ply, np.random.default_rng(0).uniform(0, 3, (50, 3)))
    out = ["--out", str(tmp_path / "out")]
    truncated = tmp_path / "truncated.pt"           # a zip archive cut in half
    with zipfile.ZipFile(tmp_path / "whole.pt", "w") as zf:
        zf.writestr("archive/data.pkl", bytes(range(256)) * 64)
    whole = (tmp_path / "whole.pt").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    cases = {
        "not found": ["segment", str(tmp_path / "missing.ply"), "--classes", "chair", *out],
        "empty (0 bytes)": ["segment", str(empty), "--classes", "chair", *out],
        "not a readable PLY": ["segment", str(text_ply), "--classes", "chair", *out],
        "NaN/inf": ["segment", str(nan_ply), "--classes", "chair", *out],
        "the list is empty": ["segment", str(room_ply), "--classes", " , ", *out],
        "checkpoint file not found": ["segment", str(room_ply), "--classes", "chair", "--ckpt",
                                      str(tmp_path / "missing.pt"), *out],
        "query 1 is empty": ["query", str(room_ply), " ", *out],
        "corrupt or truncated": ["segment", str(room_ply), "--classes", "chair", "--ckpt",
                                 str(truncated), *out],
    }
    results = _probe(list(cases.values()))
    for (message, argv), r in zip(cases.items(), results, strict=True):
        assert r["code"] == 1 and message in r["err"], (argv, r)
        assert r["heavy"] == [], (argv, r)
    assert "missing.pt" in results[5]["err"] and str(nan_ply) in results[3]["err"]
    assert not (tmp_path / "out").exists()
