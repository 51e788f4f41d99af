"""Speed and memory: segment cost curve, sparse backends, FLOP/s of the sparse convolutions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import time_it


def _run_measured(argv: list[str], env: dict | None = None) -> dict:
    """Run a command; return wall seconds and the child's peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()[-400:] if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def make_scan_of_size(src_points: np.ndarray, src_colors: np.ndarray, n: int, path: Path,
                      seed: int = 0) -> Path:
    """Subsample (or jitter-upsample) a scan to ``n`` points and save it as (N, 6) NPY."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(src_points), n, replace=n > len(src_points))
    pts = src_points[idx] + (rng.normal(0, 0.003, (n, 3)) if n > len(src_points) else 0)
    np.save(path, np.concatenate([pts, src_colors[idx]], 1).astype(np.float32))
    return path


def segment_curve(ckpt: str, scene_root: Path, scene: str, out: Path,
                  sizes=(10_000, 30_000, 100_000, 300_000)) -> list[dict]:
    """Time and peak memory of ``xmask3d segment`` against scan size, with and without views."""
    from xmask3d.data.processed import ProcessedLayout

    layout = ProcessedLayout(scene_root)
    split = "val" if scene in layout.scene_names("val") else "train"
    sc = layout.load_scene(split, scene)
    views = layout.scene_2d_dir(scene)
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        npy = make_scan_of_size(sc.points, sc.colors.astype(np.float32), n, out / f"scan_{n}.npy")
        for mode, extra in (("views", ["--views", str(views)]), ("virtual", []),
                            ("3d-only", ["--no-2d"])):
            argv = [sys.executable, "-m", "xmask3d", "segment", str(npy), "--classes",
                    "wall, floor, cabinet, bed, chair, sofa, table, door, window, bookshelf",
                    "--ckpt", ckpt, "--out", str(out / f"seg_{n}_{mode}"), "--no-progress", *extra]
            r = _run_measured(argv, {"OMP_NUM_THREADS": "2"})
            rows.append({"points": n, "mode": mode, "views": len(layout.frame_names(scene))
                         if mode == "views" else None, **r})
    return rows


def backend_comparison(config: str, batch) -> dict:
    """The same tiny 3D UNet (shared weights) on the torch and spconv backends; FLOP/s."""
    from xmask3d.config import load_config
    from xmask3d.models.build import build_model
    from xmask3d.sparse import SparseTensor

    res = {}
    state = None
    for backend in ("torch", "spconv"):
        cfg = load_config(config, [f"backbone3d.backend={backend}"])
        torch.manual_seed(0)
        model = build_model(cfg, text_dim=384).eval()
        if state is None:
            state = model.backbone3d.state_dict()
        model.backbone3d.load_state_dict(state)

        def fwd(model=model):
            with torch.no_grad():
                model.backbone3d(SparseTensor.from_voxels(batch.voxel_feats, batch.voxel_coords,
                                                          batch_size=1))
        res[backend] = time_it(fwd, repeats=3)
    res["flops"] = sparse_flops(config, batch)
    res["flops"]["achieved_gflops_torch"] = res["flops"]["gflop"] / res["torch"]["min_s"]
    res["flops"]["fraction_of_matmul_ceiling"] = (res["flops"]["achieved_gflops_torch"]
                                                  / res["flops"]["matmul_gflops"])
    return res


def sparse_flops(config: str, batch) -> dict:
    """Multiply-add FLOPs of every sparse conv of the tiny 3D UNet on ``batch`` and the plain-matmul
    ceiling of this machine.

    The work is counted from the kernel maps the pure-PyTorch backend really uses:
    ``2 * pairs * C_in * C_out`` summed over kernel offsets (the SubM centre counts every voxel).
    """
    from xmask3d.config import load_config
    from xmask3d.models.build import build_model
    from xmask3d.sparse import SparseTensor, torch_backend

    cfg = load_config(config, ["backbone3d.backend=torch"])
    model = build_model(cfg, text_dim=384).eval()
    counted = {"flop": 0.0, "pairs": 0}
    original = torch_backend.sparse_conv_features

    def counting(features, weight, kmap):
        pairs = sum(int(i.numel()) for _, i, _ in kmap.pairs)
        if kmap.identity is not None:
            pairs += int(features.shape[0])
        counted["pairs"] += pairs
        counted["flop"] += 2.0 * pairs * weight.shape[-1] * weight.shape[0]
        return original(features, weight, kmap)

    torch_backend.sparse_conv_features = counting
    try:
        with torch.no_grad():
            model.backbone3d(SparseTensor.from_voxels(batch.voxel_feats, batch.voxel_coords,
                                                      batch_size=1))
    finally:
        torch_backend.sparse_conv_features = original
    a = torch.randn(2048, 2048)
    mm = time_it(lambda: a @ a, repeats=5)
    return {"gflop": counted["flop"] / 1e9, "pairs": counted["pairs"],
            "matmul_gflops": 2 * 2048**3 / mm["min_s"] / 1e9,
            "note": "FLOPs counted from the kernel maps actually used (input-output pairs)"}


def to_json(rows) -> str:
    return json.dumps(rows, indent=1)
