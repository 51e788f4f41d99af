"""The reliability table: how ``xmask3d segment`` (and ``eval``) answer odd and broken inputs.

``python -m benchmarks.reliability`` builds each input of the table in a temporary folder (a
small synthetic room, then variants of it: empty, truncated, text, NaN, one point, a plane, a
line, duplicates, PLY flavours, wrong-shape arrays, RGB-D frames with a missing depth map or a
non-rigid pose, missing or corrupt checkpoints), runs the command line on it in a subprocess
with the bundled checkpoint, and records the exit code, the first line of the error (or of the
outcome), and the wall time. It writes ``docs/reliability.md`` and the rows under the
``reliability`` key of ``docs/results.json`` (other keys are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import merge_results
from xmask3d.data.processed import atomic_write

CLASSES = "wall, floor, table, chair"
TIMEOUT_S = 600


@dataclass
class Case:
    """One row: ``build(folder, ckpt)`` makes the input and returns the CLI arguments."""

    name: str
    build: Callable[[Path, Path], list[str]]
    expect: str          # "refused" or "runs"
    note: str = ""       # what happens, in words, when the outcome needs explaining


# ------------------------------------------------------------------ inputs


def room(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 4 x 5 x 2.5 m room (floor, four walls, a table) with one colour per surface."""
    rng = np.random.default_rng(seed)
    parts, cols = [], []
    k = n // 6
    floor = np.c_[rng.uniform(0, 4, k * 2), rng.uniform(0, 5, k * 2), np.zeros(k * 2)]
    parts.append(floor)
    cols.append(np.tile([150, 120, 90], (len(floor), 1)))
    for axis, value, span in ((0, 0.0, 5), (0, 4.0, 5), (1, 0.0, 4), (1, 5.0, 4)):
        u, h = rng.uniform(0, span, k // 2 * 2), rng.uniform(0, 2.5, k // 2 * 2)
        wall = np.c_[np.full_like(u, value), u, h] if axis == 0 else np.c_[u, np.full_like(u,
                                                                                          value), h]
        parts.append(wall)
        cols.append(np.tile([200, 200, 190], (len(wall), 1)))
    top = np.c_[rng.uniform(1.5, 2.5, k), rng.uniform(2, 3, k), np.full(k, 0.75)]
    parts.append(top)
    cols.append(np.tile([110, 70, 40], (k, 1)))
    pts = np.concatenate(parts).astype(np.float32)
    return pts, np.concatenate(cols).astype(np.uint8)


def _ply(path: Path, fields: dict[str, np.ndarray], *elements, text: bool = False,
         order: str = "<") -> Path:
    from plyfile import PlyData, PlyElement

    table = np.empty(len(next(iter(fields.values()))),
                     dtype=[(k, v.dtype.newbyteorder(order)) for k, v in fields.items()])
    for k, v in fields.items():
        table[k] = v
    PlyData([PlyElement.describe(table, "vertex"), *elements], text=text,
            byte_order=order).write(str(path))
    return path


def _xyzrgb(pts: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "red": cols[:, 0],
            "green": cols[:, 1], "blue": cols[:, 2]}


def _segment(scan: Path | str, folder: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["segment", str(scan), "--classes", CLASSES, "--ckpt", str(ckpt), "--out",
            str(folder / "out"), "--no-progress", *extra]


def _write_room_ply(folder: Path, name: str = "scan.ply", **kw) -> Path:
    from xmask3d.data.ply import write_ply

    pts, cols = room(**kw)
    write_ply(folder / name, pts, cols)
    return folder / name


def _frames(folder: Path, pts: np.ndarray, cols: np.ndarray, n: int = 4) -> Path:
    """A 7-Scenes frame folder of ``n`` views rendered from the coloured points."""
    from PIL import Image

    from xmask3d.apps.virtual_views import look_at, point_spacing, render_view
    from xmask3d.data.processed import SCANNET_DEFAULT_INTRINSICS_320x240
    from xmask3d.data.sens import scale_intrinsics

    seq = folder / "frames"
    seq.mkdir()
    hw = (120, 160)
    K = scale_intrinsics(SCANNET_DEFAULT_INTRINSICS_320x240, (320, 240), (hw[1], hw[0]))
    np.savetxt(seq / "camera-intrinsics.txt", K)
    spacing = point_spacing(pts)
    centre = np.array([2.0, 2.5, 0.8])
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = centre + [1.5 * np.cos(a), 1.8 * np.sin(a), 0.7]
        pose = look_at(eye, centre - [1.5 * np.cos(a), 1.8 * np.sin(a), 0.5])
        view = render_view(pts, cols, pose, K, hw, name=str(i), spacing=spacing)
        stem = f"frame-{i:06d}"
        Image.fromarray(view.color).save(seq / f"{stem}.color.png")
        depth_mm = np.clip(np.round(np.nan_to_num(view.depth) * 1000), 0, 65535)
        Image.fromarray(depth_mm.astype(np.uint16)).save(seq / f"{stem}.depth.png")
        np.savetxt(seq / f"{stem}.pose.txt", pose, "%.9f")
    return seq


def _case_help(folder: Path, ckpt: Path) -> list[str]:
    return ["segment", "--help"]


def _case_missing(folder: Path, ckpt: Path) -> list[str]:
    return _segment(folder / "no_such_scan.ply", folder, ckpt)


def _case_bytes(blob: bytes, name: str) -> Callable[[Path, Path], list[str]]:
    def build(folder: Path, ckpt: Path) -> list[str]:
        (folder / name).write_bytes(blob)
        return _segment(folder / name, folder, ckpt)
    return build


def _case_nan(folder: Path, ckpt: Path) -> list[str]:
    pts, cols = room()
    pts[::50, 2] = np.nan
    return _segment(_ply(folder / "nan.ply", _xyzrgb(pts, cols)), folder, ckpt)


def _case_truncated(folder: Path, ckpt: Path) -> list[str]:
    blob = _write_room_ply(folder, "full.ply").read_bytes()
    (folder / "truncated.ply").write_bytes(blob[: len(blob) // 2])
    return _segment(folder / "truncated.ply", folder, ckpt)


def _case_empty_classes(folder: Path, ckpt: Path) -> list[str]:
    argv = _segment(_write_room_ply(folder), folder, ckpt)
    argv[argv.index("--classes") + 1] = ""
    return argv


def _case_missing_ckpt(folder: Path, ckpt: Path) -> list[str]:
    return _segment(_write_room_ply(folder), folder, folder / "missing.pt")


def _corrupt_ckpt(folder: Path, ckpt: Path) -> Path:
    blob = ckpt.read_bytes()
    (folder / "corrupt.pt").write_bytes(blob[: len(blob) // 3])
    return folder / "corrupt.pt"


def _case_corrupt_ckpt(folder: Path, ckpt: Path) -> list[str]:
    return _segment(_write_room_ply(folder), folder, _corrupt_ckpt(folder, ckpt))


def _case_eval_corrupt_ckpt(folder: Path, ckpt: Path) -> list[str]:
    return ["eval", "--ckpt", str(_corrupt_ckpt(folder, ckpt)), "--out", str(folder / "out"),
            "--no-progress"]


def _case_points(make: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                 name: str) -> Callable[[Path, Path], list[str]]:
    def build(folder: Path, ckpt: Path) -> list[str]:
        pts, cols = make(*room())
        return _segment(_ply(folder / name, _xyzrgb(pts.astype(np.float32),
                                                    cols.astype(np.uint8))), folder, ckpt)
    return build


def _plane(pts, cols):
    return pts * [1, 1, 0], cols


def _line(pts, cols):
    return pts * [0, 1, 0] + [2.0, 0, 1.0], cols


def _dupes(pts, cols):
    return np.repeat(pts, 3, axis=0), np.repeat(cols, 3, axis=0)


def _case_extra(folder: Path, ckpt: Path) -> list[str]:
    pts, cols = room()
    fields = {**_xyzrgb(pts, cols), "nx": np.zeros(len(pts), np.float32),
              "quality": np.arange(len(pts), dtype=np.int32)}
    return _segment(_ply(folder / "extra.ply", fields), folder, ckpt)


def _case_list(folder: Path, ckpt: Path) -> list[str]:
    pts, cols = room()
    fields = _xyzrgb(pts, cols)
    table = np.empty(len(pts), dtype=[*[(k, v.dtype) for k, v in fields.items()], ("uv", "O")])
    for k, v in fields.items():
        table[k] = v
    table["uv"] = [np.array([0.5, 0.5], np.float32)] * len(pts)
    from plyfile import PlyData, PlyElement

    PlyData([PlyElement.describe(table, "vertex")]).write(str(folder / "list.ply"))
    return _segment(folder / "list.ply", folder, ckpt)


def _case_big_endian(folder: Path, ckpt: Path) -> list[str]:
    pts, cols = room()
    return _segment(_ply(folder / "big_endian.ply", _xyzrgb(pts, cols), order=">"), folder, ckpt)


def _case_mesh(folder: Path, ckpt: Path) -> list[str]:
    from plyfile import PlyElement

    pts, cols = room()
    faces = np.empty(len(pts) // 3, dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = list(np.arange(len(faces) * 3, dtype=np.int32).reshape(-1, 3))
    return _segment(_ply(folder / "mesh.ply", _xyzrgb(pts, cols),
                         PlyElement.describe(faces, "face")), folder, ckpt)


def _case_npy(arr_fn: Callable[[], np.ndarray], name: str) -> Callable[[Path, Path], list[str]]:
    def build(folder: Path, ckpt: Path) -> list[str]:
        np.save(folder / name, arr_fn(), allow_pickle=True)
        return _segment(folder / name, folder, ckpt)
    return build


def _case_pth_shape(folder: Path, ckpt: Path) -> list[str]:
    import torch

    pts, cols = room()
    path = folder / "scan_vh_clean_2.pth"
    torch.save((pts[:, :2].astype(np.float64), cols / 127.5 - 1), path)
    return _segment(path, folder, ckpt)


def _case_views(edit: str) -> Callable[[Path, Path], list[str]]:
    def build(folder: Path, ckpt: Path) -> list[str]:
        pts, cols = room()
        scan = _ply(folder / "scan.ply", _xyzrgb(pts, cols))
        seq = _frames(folder, pts, cols)
        if edit == "no-depth":
            (seq / "frame-000001.depth.png").unlink()
        elif edit == "scaled-pose":
            pose = np.loadtxt(seq / "frame-000002.pose.txt")
            pose[:3, :3] *= 1.1
            np.savetxt(seq / "frame-000002.pose.txt", pose, "%.9f")
        elif edit == "reflected-pose":
            pose = np.loadtxt(seq / "frame-000002.pose.txt")
            pose[:3, 0] *= -1
            np.savetxt(seq / "frame-000002.pose.txt", pose, "%.9f")
        return _segment(scan, folder, ckpt, "--views", str(seq))
    return build


_TEXT = b"x y z\n0 0 0\n1 1 1\n"
_PLY_ONE = (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
            b"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
            b"end_header\n1 2 0.5 200 10 10\n")

CASES: list[Case] = [
    Case("`segment --help`", _case_help, "runs"),
    Case("missing scan file", _case_missing, "refused"),
    Case("empty file (0 bytes) named .ply", _case_bytes(b"", "empty.ply"), "refused"),
    Case("text file named .ply", _case_bytes(_TEXT, "text.ply"), "refused"),
    Case("binary PLY cut in half", _case_truncated, "refused"),
    Case("NaN coordinates", _case_nan, "refused"),
    Case("empty `--classes \"\"`", _case_empty_classes, "refused"),
    Case("missing checkpoint (`--ckpt missing.pt`)", _case_missing_ckpt, "refused"),
    Case("corrupt (truncated) checkpoint", _case_corrupt_ckpt, "refused"),
    Case("`eval --ckpt` with a corrupt checkpoint", _case_eval_corrupt_ckpt, "refused"),
    Case("one-point scan", _case_bytes(_PLY_ONE, "one_point.ply"), "refused"),
    Case("all points on a plane (z = 0)", _case_points(_plane, "plane.ply"), "runs",
         "loaded as is; segmented"),
    Case("all points on a line", _case_points(_line, "line.ply"), "runs",
         "loaded as is; segmented"),
    Case("every point three times (duplicates)", _case_points(_dupes, "dupes.ply"), "runs",
         "loaded as is (no dedup); duplicates share a voxel and get one label"),
    Case("PLY with extra vertex properties (normals, quality)", _case_extra, "runs",
         "extra properties ignored"),
    Case("PLY with a list-typed vertex property", _case_list, "runs",
         "list property ignored"),
    Case("big-endian binary PLY", _case_big_endian, "runs", "read like little-endian"),
    Case("mesh PLY with faces", _case_mesh, "runs", "the vertices are the scan"),
    Case(".npy of shape (N, 2)", _case_npy(lambda: room()[0][:, :2], "n2.npy"), "refused"),
    Case(".npy of shape (N, 4)", _case_npy(lambda: np.c_[room()[0], np.ones(len(room()[0]))],
                                           "n4.npy"), "refused"),
    Case(".npy transposed, (3, N)", _case_npy(lambda: room()[0].T.copy(), "t.npy"), "refused"),
    Case(".npy of int8 (N, 3)", _case_npy(lambda: (room()[0] * 20).astype(np.int8), "i8.npy"),
         "runs", "integer coordinates are accepted as numbers"),
    Case(".npy object array", _case_npy(lambda: np.array([[0.0, None, 1.0]], dtype=object),
                                        "obj.npy"), "refused"),
    Case(".npy 0-d", _case_npy(lambda: np.array(3.0), "zero_d.npy"), "refused"),
    Case(".npy 3-d (2, N, 3)", _case_npy(lambda: np.stack([room()[0]] * 2), "three_d.npy"),
         "refused"),
    Case(".pth scene with (N, 2) coordinates", _case_pth_shape, "refused"),
    Case("`--views` with one depth map missing", _case_views("no-depth"), "runs",
         "that frame's visibility comes from a z-buffer of the scan"),
    Case("`--views` with a scaled (non-rigid) pose", _case_views("scaled-pose"), "refused"),
    Case("`--views` with a reflected pose (det -1)", _case_views("reflected-pose"), "refused"),
]
BIG_SCAN_ROW = {"input": "10^7-point scan", "exit": None, "outcome": "see docs/segment.md",
                "message": "see docs/segment.md", "seconds": None}


# ------------------------------------------------------------------ running and reporting

_ERROR = re.compile(r"^xmask3d \w+: error: ")


def first_message(returncode: int, stdout: str, stderr: str, folder: str = "") -> str:
    """The line a user reads first: the error (or, for a traceback, its last line), the
    first warning, the segment summary, or the first stdout line; temp folders removed."""
    err = [ln for ln in stderr.splitlines() if ln.strip()]
    out = [ln for ln in stdout.splitlines() if ln.strip()]
    if returncode != 0:   # our error line, else a traceback's last line
        line = next((ln for ln in err if _ERROR.match(ln)), None)
        line = line or next((ln for ln in reversed(err) if not ln.startswith(" ")), "")
    else:
        line = next((ln for ln in err if ln.startswith("WARNING")), None)
        line = line or next((ln for ln in err if "segment: " in ln and " path, " in ln), None)
        line = line or (out[0] if out else "")
        line = line.split(", wrote ")[0]
    if folder:
        line = line.replace(folder.rstrip("/") + "/", "").replace(folder, ".")
    return line.strip()


def outcome(case: Case, returncode: int, out_json: dict | None) -> str:
    """What happened, in words: refused / ran (path, share of points seen) / crashed."""
    if returncode == 0:
        if out_json is None:
            return "answers" if case.expect == "runs" else "accepted (expected a refusal)"
        ran = f"runs, {out_json.get('path')} path, {out_json.get('num_points')} points"
        seen = out_json.get("seen_fraction")
        ran += "" if seen is None else f", {100 * seen:.0f} % seen"
        return f"{ran}; {case.note}" if case.note else ran
    if returncode == 1:
        return "refused (exit 1)" if case.expect == "refused" else "refused (expected to run)"
    return f"crash (exit {returncode})"


def run_case(case: Case, ckpt: Path, work: Path) -> dict:
    """Build the case's input under ``work`` and run the CLI on it; one table row."""
    folder = Path(tempfile.mkdtemp(prefix="case_", dir=work))
    argv = case.build(folder, ckpt)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "xmask3d", *argv], capture_output=True,
                              text=True, timeout=TIMEOUT_S, env=env)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        code, stdout, stderr = -1, "", f"timed out after {TIMEOUT_S} s"
    seconds = time.perf_counter() - t0
    summary = folder / "out" / "segment.json"
    out_json = json.loads(summary.read_text()) if code == 0 and summary.is_file() else None
    row = {"input": case.name, "exit": code, "outcome": outcome(case, code, out_json),
           "message": first_message(code, stdout, stderr, str(folder)),
           "seconds": round(seconds, 2), "expected": case.expect}
    shutil.rmtree(folder, ignore_errors=True)
    return row


def table_lines(rows: list[dict]) -> list[str]:
    """The markdown table: input, exit code, what happens, the message, wall time."""
    lines = ["| input | exit | what happens | message (first line) | time (s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        msg = r["message"].replace("|", "\\|")
        msg = f"`{msg}`" if msg and "`" not in msg else msg
        exit_code = "" if r["exit"] is None else str(r["exit"])
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(f"| {r['input']} | {exit_code} | {r['outcome']} | {msg} | {secs} |")
    return lines


def render(rows: list[dict], meta: dict) -> str:
    """The text of docs/reliability.md."""
    bad = [r["input"] for r in rows if r.get("expected") and (
        (r["expected"] == "refused") != (r["exit"] == 1) or r["exit"] not in (0, 1))]
    lines = [
        "# What happens with odd or broken inputs",
        "",
        "Every row was measured by `python -m benchmarks.reliability`: it builds the input in a",
        "temporary folder (a small synthetic room of "
        f"{meta['room_points']} coloured points and variants of it), runs the command line on it",
        "in a subprocess with the bundled checkpoint, and records the exit code (0 = ran, 1 =",
        "refused with a message, anything else = a crash), the first line a user reads and the",
        "wall time of the whole command (start-up and imports included). Temporary folder names",
        "are left out of the messages.",
        "",
        *table_lines(rows),
        "",
        "Degenerate geometry (a plane, a line, duplicated points) is a valid scan: it is loaded as",
        "it is and segmented; the share of points the views see says how well. Readers of every",
        "input format are fuzzed in the test suite (`tests/data/test_*_fuzz.py`,",
        "`tests/engine/test_checkpoint_fuzz.py`): any file either loads or is refused with a",
        "message that names it.",
        "",
        f"Measured on {meta['machine']} with {meta['threads']} CPU threads, "
        f"{meta['date']}" + (f"; the 1-minute load average was {meta['load_average'][0]} at the "
                             f"start and {meta['load_average'][1]} at the end (other jobs "
                             "shared the machine: the times are upper bounds)."
                             if meta.get("load_average") else "."),
    ]
    if bad:
        lines += ["", "Rows whose outcome differs from the one expected: " + ", ".join(bad)
                  + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import platform

    from xmask3d.apps.bundled import default_checkpoint

    p = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    p.add_argument("--out", default="docs", help="folder of reliability.md and results.json")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled one)")
    p.add_argument("--only", nargs="*", default=None, help="run only rows containing these")
    args = p.parse_args(argv)
    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint()
    if not ckpt.is_file():
        print(f"{ckpt}: no checkpoint; run `make checkpoint` first", file=sys.stderr)
        return 1
    cases = [c for c in CASES if not args.only or any(o in c.name for o in args.only)]
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="reliability_") as work:
        for case in cases:
            rows.append(run_case(case, ckpt, Path(work)))
            r = rows[-1]
            print(f"{r['seconds']:7.2f} s  exit {r['exit']}  {r['input']}: {r['message']}",
                  flush=True)
    rows.append(dict(BIG_SCAN_ROW))
    meta = {"machine": f"{platform.machine()} ({os.cpu_count()} cores)",
            "threads": os.environ.get("OMP_NUM_THREADS", "2"),
            "date": time.strftime("%Y-%m-%d"), "room_points": len(room()[0]),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
    if not args.only:
        write_report(Path(args.out), rows, meta)
    return 0


def write_report(out: Path, rows: list[dict], meta: dict) -> None:
    """``reliability.md`` and the ``reliability`` key of ``results.json`` (others kept)."""
    text = render(rows, meta)
    atomic_write(out / "reliability.md", lambda t: Path(t).write_text(text))
    merge_results(out / "results.json", "reliability", {"rows": rows, **meta})


if __name__ == "__main__":
    sys.exit(main())
