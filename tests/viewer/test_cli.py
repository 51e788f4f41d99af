"""``xmask3d view`` refuses bad input before any server starts, quickly and by name."""

from __future__ import annotations

import socket
import time

from xmask3d.cli import main


def test_unreadable_scan_is_refused(tmp_path, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_text("not a ply")
    start = time.perf_counter()
    assert main(["view", str(bad), "--port", "0"]) == 1
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "xmask3d view: error:" in err and "broken.ply" in err


def test_missing_checkpoint_is_refused_before_serving(room_ply, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["view", str(room_ply), "--ckpt", str(tmp_path / "nope.pt"),
                 "--port", str(port)]) == 1
    assert "nope.pt" in capsys.readouterr().err
    with socket.socket() as s:                       # nothing was left listening
        s.bind(("127.0.0.1", port))


def test_port_in_use_is_named(room_ply, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["view", str(room_ply), "--port", str(port)]) == 1
    assert f"port {port} on 127.0.0.1" in capsys.readouterr().err


def test_folder_that_is_not_a_segment_output(tmp_path, capsys):
    assert main(["view", str(tmp_path), "--port", "0"]) == 1
    assert "segment.json missing" in capsys.readouterr().err


def test_bad_class_list_is_refused(room_ply, capsys):
    assert main(["view", str(room_ply), "--classes", "chair,,sofa", "--port", "0"]) == 1
    assert "--classes" in capsys.readouterr().err
