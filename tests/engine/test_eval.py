"""``xmask3d eval`` on a trained tiny run: outputs, batch-size invariance, refused checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from xmask3d import cli
from xmask3d.data.processed import load_point_file
from xmask3d.data.splits import get_split
from xmask3d.engine.checkpoint import load_checkpoint, load_model_state
from xmask3d.engine.data import eval_vocabulary, open_layout, view_dataset
from xmask3d.engine.evaluator import evaluate_views
from xmask3d.models.build import build_model, build_text


def test_eval_cli_prints_table_and_writes_json_png(trained_run, synth_root, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = cli.main(["eval", "--ckpt", str(trained_run / "best.pt"), "--out", str(out),
                   "--device", "cpu", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    for word in ("hIoU", "mIoU-B", "mIoU-N", "fused", "3d-only", "2d-only", "sofa*"):
        assert word in text
    data = json.loads((out / "metrics.json").read_text())
    split = get_split("scannet_b15n4")
    assert data["split"] == "val" and data["num_scenes"] == 1 and data["num_views"] >= 1
    for kind in ("fused", "3d", "2d"):
        m = data["predictions"][kind]
        assert set(m["per_class_IoU"]) == {split.class_names[i] for i in split.evaluated}
        assert {"hIoU", "mIoU_base", "mIoU_novel"} <= set(m)
        assert Image.open(out / f"confusion_{kind}.png").format == "PNG"
        # every labelled point of the scene gets a prediction (votes, then nearest-visible fill)
        _, _, labels = load_point_file(next((synth_root / "scannet_3d" / "val").iterdir()))
        evaluated = np.isin(labels, split.evaluated).sum()
        assert np.asarray(data["confusion"][kind]).sum() == evaluated


def _model_and_data(run_dir):
    ckpt = load_checkpoint(run_dir / "last.pt")
    cfg = ckpt["config"]
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim)
    load_model_state(model, ckpt["model"], run_dir / "last.pt")
    split = get_split(cfg.data.split)
    dataset = view_dataset(cfg, open_layout(cfg), split="train", mode="eval")
    embeds = text.class_embeddings(eval_vocabulary(split)[0])
    return cfg, model, dataset, split, embeds


def test_predictions_do_not_depend_on_batch_size(trained_run, one_thread):
    cfg, model, dataset, split, embeds = _model_and_data(trained_run)
    results = [evaluate_views(model, dataset, split, class_embeds=embeds, fusion_cfg=cfg.fusion,
                              batch_size=bs, max_views=2, progress=False, keep_predictions=True)
               for bs in (1, 3)]
    assert results[0].num_views == results[1].num_views == 6     # batches of 3 cross scenes
    assert results[0].predictions.keys() == set(dataset.scenes)
    for scene, preds in results[0].predictions.items():
        for kind, pred in preds.items():
            assert pred.shape == (dataset.full_scene(scene).num_points,)
            np.testing.assert_array_equal(pred, results[1].predictions[scene][kind])
    for kind in results[0].confusion:
        np.testing.assert_array_equal(results[0].confusion[kind], results[1].confusion[kind])


def test_eval_refuses_bad_checkpoints(trained_run, tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes((trained_run / "last.pt").read_bytes()[:5000])
    assert cli.main(["eval", "--ckpt", str(broken), "--device", "cpu"]) == 1
    assert "broken.pt: corrupt or truncated checkpoint" in capsys.readouterr().err
    rc = cli.main(["eval", "--ckpt", str(trained_run / "last.pt"), "--config",
                   "tiny/scannet_b15n4", "--device", "cpu"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "last.pt: the checkpoint's architecture differs" in err
    assert "mask2d.num_queries: 6 vs 12" in err


@pytest.mark.parametrize("override", ["backbone3d.out_channels=32"])
def test_eval_set_cannot_change_architecture(trained_run, override, capsys):
    rc = cli.main(["eval", "--ckpt", str(trained_run / "last.pt"), "--set", override,
                   "--device", "cpu"])
    assert rc == 1
    assert "backbone3d.out_channels: 64 vs 32" in capsys.readouterr().err


def test_text_conditioned_model_trains_and_evaluates_with_view_captions(
        synth_root, train_argv, tmp_path, one_thread):
    """The caption-condition ablation: training, checkpoint selection and ``xmask3d eval`` run,
    and the evaluator hands every view's own caption to the model."""
    run = tmp_path / "text"
    assert cli.main(train_argv(synth_root, run, "--set", "mask2d.condition=text",
                               "--max-steps", "2")) == 0
    assert cli.main(["eval", "--ckpt", str(run / "last.pt"), "--out", str(tmp_path / "ev"),
                     "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["num_views"] >= 1
    cfg, model, dataset, split, embeds = _model_and_data(run)
    seen: list[str] = []

    def encoder(captions):
        seen.extend(captions)
        return torch.zeros(len(captions), embeds.shape[1])

    res = evaluate_views(model, dataset, split, class_embeds=embeds, fusion_cfg=cfg.fusion,
                         batch_size=2, max_views=1, progress=False, caption_encoder=encoder)
    layout = open_layout(cfg)
    captions = {layout.caption(s, f) for s in dataset.scenes for f in layout.frame_names(s)}
    assert len(seen) == res.num_views == len(dataset.scenes)
    assert all(c and c in captions for c in seen)
    with pytest.raises(ValueError, match="needs caption embeddings"):
        evaluate_views(model, dataset, split, class_embeds=embeds, fusion_cfg=cfg.fusion,
                       max_views=1, progress=False)
