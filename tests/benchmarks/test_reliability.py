"""The reliability benchmark: message extraction, table building, report writing, and that its
inputs are what the rows say (checked with the readers, no subprocess)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.reliability import (
    BIG_SCAN_ROW,
    CASES,
    first_message,
    outcome,
    render,
    room,
    table_lines,
    write_report,
)
from xmask3d.data.pointcloud import load_point_cloud, load_rgbd_frames
from xmask3d.errors import DataError


def test_first_message_picks_what_a_user_reads():
    err = ("INFO xmask3d: loading\nxmask3d segment: error: /tmp/c1/scan.ply: PLY has zero "
           "vertices\n")
    assert first_message(1, "", err, "/tmp/c1") == ("xmask3d segment: error: scan.ply: PLY has "
                                                    "zero vertices")
    tb = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'model'\n"
    assert first_message(1, "", tb) == "KeyError: 'model'"
    ok = ("INFO a: path\nWARNING xmask3d.data.pointcloud: /tmp/c2/frames: 1 of 4 frames have no "
          "depth map\nINFO xmask3d.apps.segment: segment: views path, 10 points, wrote a, b\n")
    assert first_message(0, "", ok, "/tmp/c2") == ("WARNING xmask3d.data.pointcloud: frames: 1 "
                                                   "of 4 frames have no depth map")
    assert first_message(0, "", ok.splitlines()[-1]) == ("INFO xmask3d.apps.segment: segment: "
                                                         "views path, 10 points")
    assert first_message(0, "usage: xmask3d segment [-h]\n\nmore\n", "") == (
        "usage: xmask3d segment [-h]")


def test_outcome_and_table():
    refused, runs = CASES[1], CASES[11]
    assert refused.expect == "refused" and runs.expect == "runs"
    assert outcome(refused, 1, None) == "refused (exit 1)"
    assert outcome(refused, 0, None) == "accepted (expected a refusal)"
    assert outcome(runs, 0, {"path": "virtual-views", "num_points": 70,
                             "seen_fraction": 0.754}) == (
        f"runs, virtual-views path, 70 points, 75 % seen; {runs.note}")
    assert outcome(runs, -11, None) == "crash (exit -11)"
    rows = [{"input": "a|b", "exit": 1, "outcome": "refused (exit 1)",
             "message": "x.ply: bad | worse", "seconds": 0.456, "expected": "refused"},
            dict(BIG_SCAN_ROW)]
    lines = table_lines(rows)
    assert lines[0].startswith("| input | exit | what happens | message")
    assert lines[2] == "| a|b | 1 | refused (exit 1) | `x.ply: bad \\| worse` | 0.5 |"
    assert lines[3] == ("| 10^7-point scan |  | see docs/segment.md | `see docs/segment.md` |"
                        "  |")
    meta = {"machine": "m", "threads": "2", "date": "d", "room_points": 7000}
    assert "differs from the one expected" not in render(rows, meta)
    rows[0]["exit"] = 0
    assert "Rows whose outcome differs from the one expected: a|b." in render(rows, meta)


def test_write_report_keeps_other_results(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"speed": {"x": 1}}))
    rows = [{"input": "i", "exit": 1, "outcome": "refused (exit 1)", "message": "m",
             "seconds": 1.0, "expected": "refused"}]
    write_report(tmp_path, rows, {"machine": "m", "threads": "1", "date": "d",
                                  "room_points": 5})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["speed"] == {"x": 1} and data["reliability"]["rows"] == rows
    assert "| i | 1 | refused (exit 1) | `m` | 1.0 |" in (tmp_path / "reliability.md").read_text()


def test_cases_cover_the_issue_and_build_what_they_say(tmp_path):
    names = " ".join(c.name for c in CASES)
    for item in ("--help", "missing scan", "empty file", "text file", "NaN", "--classes",
                 "missing checkpoint", "corrupt", "eval --ckpt", "one-point", "plane", "line",
                 "duplicates", "extra vertex", "list-typed", "big-endian", "mesh", "(N, 2)",
                 "(3, N)", "int8", "object", "0-d", "3-d", ".pth", "depth map missing",
                 "non-rigid", "det -1"):
        assert item in names, item
    ckpt = tmp_path / "fake.pt"
    ckpt.write_bytes(b"\0" * 300)
    pts, _ = room()
    not_about_the_scan = ("--help", "--classes", "checkpoint")
    for i, case in enumerate(CASES):
        if any(word in case.name for word in not_about_the_scan):
            continue
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        argv = case.build(folder, ckpt)
        if "--views" in argv:
            if case.expect == "refused":
                with pytest.raises(DataError, match="pose"):
                    load_rgbd_frames(argv[argv.index("--views") + 1])
            else:
                views = load_rgbd_frames(argv[argv.index("--views") + 1])
                assert len(views) == 4 and sum(v.depth is None for v in views) == 1
            continue
        if "one-point" in case.name:   # loads; segment refuses it (too small)
            assert load_point_cloud(argv[1]).num_points == 1
            continue
        if case.expect == "refused":
            with pytest.raises(DataError):
                load_point_cloud(argv[1])
            continue
        scene = load_point_cloud(argv[1])
        if "three times" in case.name:
            np.testing.assert_array_equal(scene.points, np.repeat(pts, 3, axis=0))
        elif "plane" in case.name:
            assert (scene.points[:, 2] == 0).all() and len(scene.points) == len(pts)
        elif "line" in case.name:
            assert np.ptp(scene.points[:, 0]) == 0 and np.ptp(scene.points[:, 2]) == 0
        elif "int8" in case.name:
            np.testing.assert_array_equal(scene.points, (pts * 20).astype(np.int8))
        else:
            np.testing.assert_array_equal(scene.points, pts)
