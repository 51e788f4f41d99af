"""Per-view speed and memory of the model on CPU threads (run one measurement per process).

``python -m benchmarks.speed tiny --source synth|scannet`` prints one JSON line:
visible points, voxels, forward and forward+backward seconds (median of repeats), peak RSS.
``python -m benchmarks.speed full`` times one forward of the full-size model (random SD-size
weights) on one 320x240 view.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks.common import machine, peak_rss_mb, time_it
from xmask3d.config import load_config
from xmask3d.losses.criterion import compute_losses
from xmask3d.models.build import build_matcher, build_model, build_text, loss_weights


def _batch(cfg, source: str, root: str | None):
    if source == "scannet":
        from benchmarks.views import scannet_view_batch

        return scannet_view_batch(cfg, frame=2)
    from benchmarks.views import synthetic_view_batch

    return synthetic_view_batch(cfg, root)


def measure_tiny(config: str, *, source: str, root: str | None, repeats: int,
                 overrides: list[str]) -> dict:
    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim)
    batch = _batch(cfg, source, root)
    ce, cap = text.class_embeddings(batch.class_names), text.encode_captions(batch.captions)
    weights, matcher = loss_weights(cfg), build_matcher(cfg)

    def fwd():
        with torch.no_grad():
            model.eval()(batch, ce, caption_embeds=cap)

    def fwd_bwd():
        model.train()
        model.zero_grad(set_to_none=True)
        out = model(batch, ce, caption_embeds=cap)
        loss = compute_losses(out, batch, weights=weights, matcher=matcher,
                              caption_embeds=cap, alignment_on=True)
        sum(loss.values()).backward()

    return {"config": config, "source": source, "visible_points": int(batch.points.shape[0]),
            "voxels": int(batch.voxel_coords.shape[0]), "image_hw": list(batch.image_hw),
            "backend": cfg.backbone3d.backend,
            "forward": time_it(fwd, repeats=repeats), "forward_backward": time_it(
                fwd_bwd, repeats=repeats), "peak_rss_mb": peak_rss_mb(), **machine()}


def measure_full(*, source: str, root: str | None) -> dict:
    cfg = load_config("scannet/b15n4", ["mask2d.sd_path=", "mask2d.random_sd=true",
                                        "text.encoder=minilm", "text.clip_path=",
                                        "backbone3d.backend=torch"])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(cfg, text_dim=768).eval()
    build_s = time.perf_counter() - t0
    batch = _batch(cfg, source, root)
    ce = torch.nn.functional.normalize(torch.randn(15, 768), dim=1)
    with torch.no_grad():
        t0 = time.perf_counter()
        model(batch, ce)
        fwd_s = time.perf_counter() - t0
    return {"config": "scannet/b15n4 (random SD-size weights)", "source": source,
            "visible_points": int(batch.points.shape[0]), "image_hw": list(batch.image_hw),
            "input_size": cfg.mask2d.input_size, "build_s": build_s, "forward_s": fwd_s,
            "peak_rss_mb": peak_rss_mb(), **machine()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed")
    p.add_argument("what", choices=["tiny", "full"])
    p.add_argument("--config", default="tiny/scannet_b15n4")
    p.add_argument("--source", choices=["synth", "scannet"], default="synth")
    p.add_argument("--root", default=None, help="synthetic dataset root (for --source synth)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.what == "tiny":
        res = measure_tiny(a.config, source=a.source, root=a.root, repeats=a.repeats,
                           overrides=a.overrides)
    else:
        res = measure_full(source=a.source, root=a.root)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
