"""``xmask3d import`` argument refusals (quick, before anything heavy is imported)."""

from __future__ import annotations

import subprocess
import sys

import torch

from xmask3d.cli import main


def test_missing_sd_and_clip_are_named(tmp_path, capsys):
    authors = tmp_path / "a.pth"
    torch.save({"state_dict": {"module.x": torch.zeros(1)}}, authors)
    rc = main(["import", str(authors), "--config", "scannet/b15n4", "--out",
               str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--sd is required" in err and "sd-v1-3.ckpt" in err
    assert "--clip is required" in err
    assert not (tmp_path / "m.pt").exists()


def test_missing_files_are_named(tmp_path, capsys):
    rc = main(["import", str(tmp_path / "none.pth"), "--sd", str(tmp_path / "sd.ckpt"),
               "--clip", str(tmp_path / "clip.pt"), "--config", "scannet/b15n4", "--out",
               str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert rc == 2
    for name in ("none.pth: authors' checkpoint", "sd.ckpt: --sd", "clip.pt: --clip"):
        assert name in err


def test_the_subcommand_module_is_light():
    code = "import sys, xmask3d.interop.import_cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
