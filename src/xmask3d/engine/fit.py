"""``train(cfg)``: set up a run (or resume one), loop over epochs, checkpoint, select, summarise.

Checkpoints: ``last.pt`` every ``train.ckpt_every`` epochs, at the end of the run and when a stop
signal (SIGTERM/SIGUSR1) arrives; ``best.pt`` whenever the held-out selection split's hIoU improves
(evaluated every ``train.eval_every`` epochs and at the end). ``--resume`` restores everything
needed for the resumed run to take the same steps as an uninterrupted one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xmask3d import __version__
from xmask3d.config import XMask3DConfig, to_dict
from xmask3d.data.processed import atomic_write
from xmask3d.engine import distributed as D
from xmask3d.engine.checkpoint import (
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
)
from xmask3d.engine.optim import build_scheduler
from xmask3d.engine.plots import plot_training_curves
from xmask3d.engine.trainer import (
    TrainRun,
    build_run,
    evaluate_selection,
    rng_states,
    save_config_copy,
    train_epoch,
)
from xmask3d.errors import CheckpointError

__all__ = ["config_changes", "fit", "resume_run", "save_run", "train", "weights_digest"]

logger = logging.getLogger(__name__)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order (equal on in-sync DDP ranks)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _payload(run: TrainRun) -> dict:
    st = run.state
    return {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "rng": rng_states(run),
        "epoch": st.epoch, "epoch_step": st.epoch_step, "step": st.step,
        "steps_per_epoch": run.steps_per_epoch, "world_size": run.info.world_size,
        "best": {"metric": st.best_metric, "step": st.best_step, "name": st.best_name},
        "config": to_dict(run.cfg), "xmask3d_version": __version__,
    }


def save_run(run: TrainRun, name: str) -> Path:
    """Write ``<out_dir>/<name>`` atomically from rank 0 (all ranks must call it)."""
    payload = _payload(run)
    path = run.out_dir / name
    if run.info.is_main:
        save_checkpoint(path, payload)
        logger.info("saved %s (epoch %d, step %d)", path, run.state.epoch, run.state.step)
    D.barrier()
    return path


def _restore_state(run: TrainRun, ckpt: dict, path: Path) -> None:
    st = run.state
    st.epoch, st.step = int(ckpt["epoch"]), int(ckpt["step"])
    st.epoch_step = int(ckpt.get("epoch_step", 0))
    best = ckpt.get("best") or {}
    st.best_metric = float(best.get("metric", float("-inf")))
    st.best_step, st.best_name = int(best.get("step", -1)), str(best.get("name", ""))
    same_layout = (ckpt.get("world_size") == run.info.world_size
                   and ckpt.get("steps_per_epoch") == run.steps_per_epoch)
    if not same_layout:
        logger.warning("%s was written with %s processes and %s steps/epoch, this run has %d and "
                       "%d: the data order after resuming differs from an uninterrupted run",
                       path, ckpt.get("world_size"), ckpt.get("steps_per_epoch"),
                       run.info.world_size, run.steps_per_epoch)
        st.epoch_step = min(st.epoch_step, run.steps_per_epoch)
    if st.epoch_step >= run.steps_per_epoch:
        st.epoch, st.epoch_step = st.epoch + 1, 0
    states = ckpt.get("rng") or []
    if same_layout and run.info.rank < len(states):
        restore_rng_state(states[run.info.rank], {"loss": run.loss_gen})


def config_changes(saved: XMask3DConfig, current: XMask3DConfig, *,
                   ignore: tuple[str, ...] = ("train.out_dir",)) -> list[str]:
    """Every config value that differs, as ``"key: saved -> current"`` (for a resume warning)."""
    a, b = to_dict(saved), to_dict(current)
    out = []
    for section in a:
        if not isinstance(a[section], dict):
            continue
        for key, value in a[section].items():
            name = f"{section}.{key}"
            if name not in ignore and value != b[section][key]:
                out.append(f"{name}: {value!r} -> {b[section][key]!r}")
    return out


def resume_run(run: TrainRun, resume: str) -> bool:
    """Restore ``run`` from a checkpoint (``"auto"``: ``<out_dir>/last.pt`` if present).

    Returns:
        Whether a checkpoint was loaded.
    """
    path = run.out_dir / "last.pt" if resume == "auto" else Path(resume)
    if resume == "auto" and not path.is_file():
        logger.info("--resume auto: no %s yet, starting a new run", path)
        return False
    ckpt = load_checkpoint(path, expected_config=run.cfg)
    load_model_state(run.model, ckpt["model"], path)
    try:
        run.optimizer.load_state_dict(ckpt["optimizer"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: optimiser state does not fit this run "
                              f"({type(exc).__name__}: {exc})") from exc
    _restore_state(run, ckpt, path)
    # the schedule is a function of the step: rebuilt for this run's length (train.max_steps or
    # train.epochs may have been changed on purpose), it equals the saved one otherwise
    run.scheduler = build_scheduler(run.optimizer, total_steps=run.total_steps,
                                    warmup_steps=run.cfg.train.warmup_steps,
                                    last_step=run.state.step)
    changed = config_changes(ckpt["config"], run.cfg)
    if changed:
        logger.warning("resuming with settings that differ from %s: %s", path, "; ".join(changed))
    run.log.truncate_after(run.state.step)
    logger.info("resumed from %s at epoch %d, step %d", path, run.state.epoch, run.state.step)
    return True


def _select(run: TrainRun) -> None:
    result = evaluate_selection(run)
    if result is None:
        return
    fused = result.metrics["fused"]
    name, value = ("hIoU", fused.hiou) if math.isfinite(fused.hiou) else ("mIoU_all",
                                                                           fused.miou_all)
    st = run.state
    if math.isfinite(value) and value > st.best_metric:
        st.best_metric, st.best_step, st.best_name = value, st.step, name
        save_run(run, "best.pt")


@contextmanager
def stop_on_signals(run: TrainRun, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)):
    """While active, SIGTERM/SIGUSR1 (pre-emption, ``scancel``, torchrun shutting down) make the
    loop finish its current step, write ``last.pt`` and return. A no-op outside the main
    thread, where Python cannot install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame) -> None:
        logger.warning("signal %d: stopping after this step and saving last.pt", signum)
        run.stop_requested = True

    previous = {s: signal.signal(s, request_stop) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def fit(run: TrainRun, *, progress: bool = True) -> None:
    """Train from ``run.state`` to the last step, with selection and checkpoints.

    A stop request (see :func:`stop_on_signals`) ends the loop after the current step with a
    ``last.pt`` to resume from; no selection runs then.
    """
    cfg, st = run.cfg, run.state
    start = st.step
    views_per_step = cfg.train.batch_size * run.info.world_size
    bar = tqdm(total=max(run.total_steps - st.step, 0) * views_per_step, initial=0,
               unit="view", desc="train", dynamic_ncols=True,
               disable=not (progress and run.info.is_main))
    last_eval = last_save = -1
    while st.step < run.total_steps and not run.stop_agreed:
        train_epoch(run, bar)
        if st.epoch_step < run.steps_per_epoch:
            continue
        st.epoch, st.epoch_step = st.epoch + 1, 0
        if cfg.train.eval_every > 0 and st.epoch % cfg.train.eval_every == 0:
            _select(run)
            last_eval = st.step
        if cfg.train.ckpt_every > 0 and st.epoch % cfg.train.ckpt_every == 0:
            save_run(run, "last.pt")
            last_save = st.step
    bar.close()
    if st.step == start:
        return
    if last_eval != st.step and cfg.train.eval_every > 0 and not run.stop_agreed:
        _select(run)
    if last_save != st.step:
        save_run(run, "last.pt")


def _summary(run: TrainRun) -> dict:
    digests = D.all_gather_objects(weights_digest(run.model))
    st = run.state
    best = run.out_dir / "best.pt"
    summary = {
        "steps": st.step, "total_steps": run.total_steps, "stopped_by_signal": run.stop_agreed,
        "epoch": st.epoch, "epoch_step": st.epoch_step,
        "world_size": run.info.world_size, "device": str(run.info.device),
        "train_seconds": round(run.train_seconds, 3), "views_seen": run.views_seen,
        "views_per_s": run.views_seen / run.train_seconds if run.train_seconds else None,
        "last_checkpoint": str(run.out_dir / "last.pt"),
        "best_checkpoint": str(best) if best.is_file() else None,
        "best": {"metric": st.best_name or None,
                 "value": st.best_metric if math.isfinite(st.best_metric) else None,
                 "step": st.best_step},
        "weight_sha256_per_rank": digests, "ranks_in_sync": len(set(digests)) == 1,
    }
    if not summary["ranks_in_sync"]:
        logger.error("the ranks hold different weights at the end of the run: %s", digests)
    return summary


def finish(run: TrainRun) -> dict:
    """Curves PNG, ``run_summary.json`` and a closing log line; returns the summary."""
    summary = _summary(run)
    if run.info.is_main:
        text = json.dumps(summary, indent=2)
        atomic_write(run.out_dir / "run_summary.json", lambda tmp: Path(tmp).write_text(text))
        if run.log.path.is_file():
            png = plot_training_curves(run.log.path, run.out_dir / "curves.png")
            summary["curves"] = str(png) if png else None
        if run.stop_agreed:
            logger.warning("stopped at step %d of %d on request; continue with --resume auto",
                           run.state.step, run.total_steps)
        rate = summary["views_per_s"]
        logger.info("training done: step %d, %s views/s, checkpoints in %s", run.state.step,
                    "n/a" if rate is None else f"{rate:.2f}", run.out_dir)
    return summary


def train(cfg: XMask3DConfig, *, resume: str | None = None, device: str = "auto",
          progress: bool = True) -> dict:
    """Train XMask3D with ``cfg`` (single process, or one rank of a torchrun job).

    Args:
        cfg: the resolved configuration (``train.out_dir`` receives everything).
        resume: a checkpoint path, ``"auto"`` (``<out_dir>/last.pt`` when present) or ``None``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: show the progress bar (rank 0).

    Returns:
        The run summary (also written to ``<out_dir>/run_summary.json``).
    """
    info = D.init_distributed(device)
    run, threads, ok = None, torch.get_num_threads(), False
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    try:
        run = build_run(cfg, info)
        resumed = resume_run(run, resume) if resume else False
        if not resumed:
            run.log.truncate_after(-1)
        save_config_copy(cfg, run.out_dir)
        with stop_on_signals(run):
            fit(run, progress=progress)
        summary = finish(run)
        ok = True
        return summary
    finally:
        torch.set_num_threads(threads)
        if run is not None:
            run.log.close()
        if info.world_size > 1:
            # free the DDP reducer (it holds the process group) before the group goes: a gloo
            # group torn down under a live reducer can hang the process at exit
            del run
            gc.collect()
            D.cleanup_distributed(wait=ok)
