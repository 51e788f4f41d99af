"""The training loop: one explicit loop over (scene, view) batches, no hook registry.

Follows XMask3D training (method.md §6): AdamW with a separate learning rate for the 3D networks,
per-step cosine decay, the mask-level regularisation from ``loss.alignment_start_epoch`` on.
Added: warm-up, gradient clipping, bf16 autocast on CUDA, a finiteness check of every loss term,
exact resume (model, optimiser, schedule, RNG of every rank, position inside the epoch), and
checkpoint selection on held-out training scenes instead of the reported split (decisions §5).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from xmask3d.config import XMask3DConfig, save_config
from xmask3d.data.batch import ViewBatch
from xmask3d.data.dataset import ViewDataset, collate_views
from xmask3d.data.regions import region_phrases
from xmask3d.engine import distributed as D
from xmask3d.engine.checkpoint import capture_rng_state
from xmask3d.engine.data import (
    category_split,
    eval_shard,
    eval_vocabulary,
    loader_batches,
    open_layout,
    selection_scenes,
    view_dataset,
)
from xmask3d.engine.evaluator import EvalResult, evaluate_views
from xmask3d.engine.optim import build_optimizer, build_scheduler, trainable_parameters
from xmask3d.engine.run_log import RunLog
from xmask3d.engine.sampler import EpochBatchSampler
from xmask3d.errors import XMask3DError
from xmask3d.losses.criterion import LossWeights, compute_losses, needs_region_text
from xmask3d.losses.matcher import HungarianMatcher
from xmask3d.losses.point_losses import balanced_class_weights
from xmask3d.losses.region_contrast import prime_phrase_cache, region_text_embeddings
from xmask3d.models.build import build_matcher, build_model, build_text, loss_weights
from xmask3d.models.text.classifier import TextClassifier

__all__ = ["NonFiniteLossError", "TrainRun", "TrainState", "build_run", "caption_embeddings",
           "check_finite", "evaluate_selection", "stop_everywhere", "total_steps", "train_epoch",
           "train_step"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(XMask3DError, FloatingPointError):
    """A loss term became NaN or infinite; the message names the step and the term."""


@dataclass
class TrainState:
    """Counters that a checkpoint restores (``epoch_step``: batches done in ``epoch``)."""

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    best_metric: float = float("-inf")
    best_step: int = -1
    best_name: str = ""


class LogWindow:
    """Running sums of logged values between two log records; the clock stops between epochs
    (selection and checkpoints do not count as training time)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count, self.views, self.seconds = 0, 0, 0.0
        self._since: float | None = None

    def resume(self) -> None:
        self._since = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def elapsed(self) -> float:
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self.seconds + running

    def add(self, values: dict[str, float], views: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count, self.views = self.count + 1, self.views + views


@dataclass
class TrainRun:
    """Everything a training run holds; built by :func:`build_run`."""

    cfg: XMask3DConfig
    info: D.DistInfo
    out_dir: Path
    model: nn.Module                       # the unwrapped model
    net: nn.Module                         # what the loop calls: the DDP wrapper or the model
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    text: TextClassifier
    class_embeds: Tensor                   # (C_base, E) on the device
    weights: LossWeights
    matcher: HungarianMatcher
    train_set: ViewDataset
    sampler: EpochBatchSampler
    loader: DataLoader
    select_set: ViewDataset | None         # this rank's share of the selection scenes
    has_selection: bool
    log: RunLog
    loss_gen: torch.Generator
    state: TrainState = field(default_factory=TrainState)
    train_seconds: float = 0.0
    views_seen: int = 0
    window: LogWindow = field(default_factory=LogWindow)
    stop_requested: bool = False           # set on this rank by SIGTERM/SIGUSR1
    stop_agreed: bool = False              # all ranks have seen a stop request: save and stop

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    @property
    def total_steps(self) -> int:
        """Length of the run and of its schedule: ``train.max_steps``, else all epochs."""
        return total_steps(self.cfg, self.steps_per_epoch)

    @property
    def autocast(self):
        if self.cfg.train.amp and self.info.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def total_steps(cfg: XMask3DConfig, steps_per_epoch: int) -> int:
    """Optimiser steps of a run: ``train.max_steps`` when set (it overrides ``train.epochs``),
    else ``train.epochs`` full epochs."""
    return cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs * steps_per_epoch


def caption_encoder(cfg, text: TextClassifier, device: torch.device):
    """Captions -> embeddings for evaluating a model whose diffusion UNet is conditioned on text
    (``mask2d.condition == "text"``); ``None`` for every other model."""
    if cfg.mask2d.condition != "text":
        return None
    return lambda captions: caption_embeddings(text, captions, device)


def caption_embeddings(text: TextClassifier, captions: list[str],
                       device: torch.device) -> Tensor:
    """(B, E) caption embeddings with zero rows for views without a caption.

    Captions are encoded one at a time: a padded batch would make a caption's embedding depend
    (in floating point) on the captions it happened to be encoded with, so a resumed run, whose
    cache fills in a different order, would not reproduce an uninterrupted one bit for bit.
    """
    for caption in dict.fromkeys(captions):
        text.encode_captions([caption])                  # fills the classifier's cache
    embeds = text.encode_captions(captions).to(device)
    has = torch.tensor([bool(c.strip()) for c in captions], device=device)
    return embeds * has[:, None].to(embeds.dtype)


def _needs_captions(w: LossWeights, cfg: XMask3DConfig) -> bool:
    return (w.caption_fused, w.caption_3d, w.caption_2d) != (0, 0, 0) or \
        cfg.mask2d.condition == "text"


def build_run(cfg: XMask3DConfig, info: D.DistInfo) -> TrainRun:
    """Build model, text side, data, optimiser and schedule for ``cfg`` on this rank."""
    out_dir = Path(cfg.train.out_dir)
    if cfg.train.tune_malloc and info.device.type == "cpu":
        from xmask3d.allocator import tune_malloc_for_training

        tune_malloc_for_training()
    D.seed_all(cfg.train.seed)                 # identical initial weights on every rank
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim).to(info.device)
    D.seed_all(cfg.train.seed + 1000 * info.rank)
    split = category_split(cfg)
    layout = open_layout(cfg)
    train_scenes, held_out = selection_scenes(layout.scene_names(cfg.data.train_split),
                                              fraction=cfg.data.select_fraction,
                                              seed=cfg.train.seed)
    train_set = view_dataset(cfg, layout, split=cfg.data.train_split, mode="train",
                             scenes=train_scenes)
    sampler = EpochBatchSampler(len(train_set), cfg.train.batch_size, rank=info.rank,
                                world_size=info.world_size, seed=cfg.train.seed)
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_views,
                        num_workers=cfg.data.workers, pin_memory=info.device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.train.seed))
    select_set = None
    if held_out and cfg.train.eval_every > 0:
        select_set = eval_shard(cfg, layout, split=cfg.data.train_split, scenes=held_out,
                                rank=info.rank, world_size=info.world_size)
    optimizer = build_optimizer(model.param_groups(lr_3d=cfg.train.lr_3d, lr=cfg.train.lr,
                                                   weight_decay=cfg.train.weight_decay))
    scheduler = build_scheduler(optimizer, total_steps=total_steps(cfg, len(sampler)),
                                warmup_steps=cfg.train.warmup_steps)
    net: nn.Module = model
    if info.world_size > 1:
        net = DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=True)
    weights = loss_weights(cfg)
    if cfg.loss.point_balance > 0:               # class weights from the training labels
        counts = train_set.label_counts()
        weights = replace(weights, point_class_weights=balanced_class_weights(
            counts, cfg.loss.point_balance))
        logger.info("point CE class weights (loss.point_balance=%g): %s", cfg.loss.point_balance,
                    ", ".join(f"{n} {w:.2f}" for n, w in zip(train_set.class_names,
                                                             weights.point_class_weights,
                                                             strict=True)))
    if needs_region_text(weights):               # every region phrase encoded once, up front
        prime_phrase_cache(text, region_phrases(layout.region_captions_file, train_scenes))
    logger.info("train: %d scenes (%d items/epoch), selection: %d held-out scenes, %d steps "
                "(%d per epoch), %.2f M trainable parameters", len(train_scenes), len(train_set),
                len(held_out), total_steps(cfg, len(sampler)), len(sampler),
                trainable_parameters(model) / 1e6)
    return TrainRun(
        cfg=cfg, info=info, out_dir=out_dir, model=model, net=net, optimizer=optimizer,
        scheduler=scheduler, text=text,
        class_embeds=text.class_embeddings(list(split.base_names)).to(info.device),
        weights=weights, matcher=build_matcher(cfg), train_set=train_set,
        sampler=sampler, loader=loader, select_set=select_set, has_selection=bool(held_out)
        and cfg.train.eval_every > 0, log=RunLog(out_dir, enabled=info.is_main),
        loss_gen=torch.Generator().manual_seed(cfg.train.seed + 7919 * info.rank))


def check_finite(losses: dict[str, Tensor], *, step: int, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the step and the term(s) if any is not finite.

    All ranks take part, so that every rank stops at the same step.
    """
    names = list(losses)
    values = torch.stack([losses[k].detach().float().reshape(()) for k in names]).cpu()
    bad = ~torch.isfinite(values)
    if D.all_reduce_max(float(bad.any())) == 0.0:
        return
    terms = ", ".join(f"{names[i]}={values[i].item()}" for i in torch.nonzero(bad).flatten())
    where = terms or f"a term on another rank (this is rank {D.get_rank()})"
    raise NonFiniteLossError(f"non-finite loss at step {step} (epoch {epoch}): {where}; "
                             "the run is stopped (lower the learning rate, enable "
                             "train.clip_grad, or check the data of this step)")


def train_step(run: TrainRun, batch: ViewBatch) -> tuple[dict[str, float], float]:
    """One optimiser step on ``batch`` (already on the device).

    Returns:
        The loss terms, the total and the learning rate of each group (``lr_<name>``) as floats
        (this rank), and the total gradient norm before clipping.
    """
    cfg, st = run.cfg, run.state
    captions = (caption_embeddings(run.text, batch.captions, run.info.device)
                if _needs_captions(run.weights, cfg) else None)
    regions = (region_text_embeddings(run.text, batch.region_captions, run.info.device)
               if needs_region_text(run.weights) else None)
    with run.autocast:
        out = run.net(batch, run.class_embeds, caption_embeds=captions)
        losses = compute_losses(out, batch, weights=run.weights, matcher=run.matcher,
                                caption_embeds=captions,
                                alignment_on=st.epoch >= cfg.loss.alignment_start_epoch,
                                generator=run.loss_gen, region_text=regions)
    check_finite(losses, step=st.step + 1, epoch=st.epoch)
    total = torch.stack([v.float() for v in losses.values()]).sum()
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    params = [p for p in run.model.parameters() if p.grad is not None]
    limit = cfg.train.clip_grad if cfg.train.clip_grad > 0 else float("inf")   # inf: norm only
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
    values = {k: float(v.detach()) for k, v in losses.items()}
    values["loss"] = float(total.detach())
    for i, group in enumerate(run.optimizer.param_groups):
        values[f"lr_{group.get('name', i)}"] = float(group["lr"])     # the rate of this step
    run.optimizer.step()
    run.scheduler.step()
    return values, grad_norm


def _log_train(run: TrainRun, window: LogWindow, grad_norm: float) -> None:
    keys = sorted(window.sums)
    means = torch.tensor([window.sums[k] / window.count for k in keys], dtype=torch.float64)
    means = D.all_reduce_mean(means)
    seconds = max(window.elapsed(), 1e-9)
    values: dict[str, float] = {k: float(v) for k, v in zip(keys, means.tolist())}
    values["grad_norm"] = grad_norm
    values["views_per_s"] = window.views * run.info.world_size / seconds
    run.log.write("train", step=run.state.step, epoch=run.state.epoch, values=values)


def stop_everywhere(run: TrainRun) -> bool:
    """Whether any rank was asked to stop (collective: every rank calls it after every step)."""
    return D.all_reduce_max(float(run.stop_requested)) > 0


def train_epoch(run: TrainRun, bar: tqdm) -> None:
    """Run the rest of the current epoch, up to the last step, or until a stop request."""
    cfg, st = run.cfg, run.state
    run.train_set.set_epoch(st.epoch)
    run.sampler.set_epoch(st.epoch, start=st.epoch_step)
    run.net.train()
    t0 = time.perf_counter()
    run.window.resume()
    for batch in loader_batches(run.loader):
        values, grad_norm = train_step(run, batch.to(run.info.device))
        st.step, st.epoch_step = st.step + 1, st.epoch_step + 1
        views = batch.batch_size
        run.window.add(values, views)
        run.views_seen += views * run.info.world_size
        bar.update(views * run.info.world_size)
        rate = run.views_seen / max(run.train_seconds + time.perf_counter() - t0, 1e-9)
        bar.set_postfix(epoch=st.epoch, loss=f"{values['loss']:.3f}", views_s=f"{rate:.2f}")
        if st.step % max(cfg.train.log_every, 1) == 0:
            _log_train(run, run.window, grad_norm)
            run.window = LogWindow()
            run.window.resume()
        if st.step >= run.total_steps:
            break
        if stop_everywhere(run):
            run.stop_agreed = True
            break
    run.window.pause()
    run.train_seconds += time.perf_counter() - t0


def evaluate_selection(run: TrainRun) -> EvalResult | None:
    """Evaluate the held-out training scenes (RNG states untouched); log the metrics."""
    if not run.has_selection:
        return None
    cfg = run.cfg
    split = category_split(cfg)
    names, _, _ = eval_vocabulary(split)
    devices = [run.info.device] if run.info.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        result = evaluate_views(
            run.model, run.select_set, split,
            class_embeds=run.text.class_embeddings(names), fusion_cfg=cfg.fusion,
            use_clip=cfg.eval.clip_ensemble, batch_size=cfg.eval.batch_size,
            max_views=cfg.eval.max_views, device=run.info.device, amp=cfg.train.amp,
            workers=cfg.data.workers, progress=False,
            caption_encoder=caption_encoder(cfg, run.text, run.info.device))
    run.net.train()
    values = {}
    for kind, m in result.metrics.items():
        prefix = "" if kind == "fused" else f"{kind}_"
        values.update({f"{prefix}hIoU": m.hiou, f"{prefix}mIoU_base": m.miou_base,
                       f"{prefix}mIoU_novel": m.miou_novel})
    run.log.write("select", step=run.state.step, epoch=run.state.epoch, values=values)
    logger.info("selection split at step %d: hIoU %.1f, mIoU base %.1f, novel %.1f",
                run.state.step, result.metrics["fused"].hiou,
                result.metrics["fused"].miou_base, result.metrics["fused"].miou_novel)
    return result


def save_config_copy(cfg: XMask3DConfig, out_dir: Path) -> None:
    """The resolved config next to the checkpoints (rank 0)."""
    if D.is_main_process():
        save_config(cfg, out_dir / "config.yaml")


def rng_states(run: TrainRun) -> list[dict]:
    """Every rank's RNG states (collective: all ranks must call it)."""
    return D.all_gather_objects(capture_rng_state({"loss": run.loss_gen}))
