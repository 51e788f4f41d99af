"""``xmask3d view``: look at a scan in the browser, segment it with your words, query it live.

This module is light (standard library only at import): the model, viser and numpy-heavy code
are imported inside :func:`run` after the arguments and input files are checked.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

__all__ = ["DEFAULT_CLASSES", "add_parser", "run", "start_viewer"]

logger = logging.getLogger(__name__)

DEFAULT_CLASSES = ("wall, floor, cabinet, bed, chair, sofa|couch, table, door, window, "
                   "bookshelf, picture, counter, desk, curtain, refrigerator, toilet, sink, "
                   "bathtub")

_EPILOG = """examples:
  xmask3d view room.ply                      # then open the printed address in a browser
  xmask3d view scene.pth --classes "bed, desk, chair, floor, wall" --views frames/
  xmask3d view seg/                          # a folder `xmask3d segment --out seg` wrote
  xmask3d view room.ply --host 0.0.0.0 --port 8090   # reachable from other machines
"""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``view``."""
    # light: numpy and the readers
    from xmask3d.apps.common import add_model_arguments
    from xmask3d.apps.other import add_other_arguments

    p = subparsers.add_parser(
        "view", help="browser viewer: segment a scan with your words and query it live",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", help="point cloud (.ply, .npy, .pth) or a folder `segment` wrote")
    p.add_argument("--classes", default=DEFAULT_CLASSES,
                   help='initial class list, synonyms with "|" (editable on the page)')
    p.add_argument("--base-classes", default="",
                   help="those of the classes the checkpoint was trained on (base/novel gate)")
    add_other_arguments(p, "view")
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="port (0: any free port)")
    p.add_argument("--export-dir", default=None,
                   help="where Export PLY/PNG write (default: <scan stem>_view/)")
    # view-selection settings of `segment` that the viewer keeps at their defaults
    p.set_defaults(func=run, batch_size=None, max_view_points=None, chunk_points=65000,
                   no_progress=True)


def start_viewer(args: argparse.Namespace):
    """Check the inputs, start the server and (for a scan) the first run in a thread.

    Returns:
        ``(server, worker)``: the :class:`~xmask3d.viewer.server.ViewerServer` and the thread
        computing the point features (``None`` for a result folder).

    Raises:
        XMask3DError: an unreadable scan, folder or checkpoint, a bad class list or a port in
            use, all before the server starts.
    """
    import importlib.util

    from xmask3d.apps.common import check_span, find_views, load_scan, parse_names, to_frame
    from xmask3d.data.orientation import detect_frame
    from xmask3d.errors import ConfigError
    from xmask3d.viewer.server import ViewerServer, check_port_free
    from xmask3d.viewer.state import ViewState, load_segment_result

    if importlib.util.find_spec("viser") is None:
        raise ConfigError("`xmask3d view` needs viser: pip install 'xmask3d[view]'")
    scan = Path(args.scan)
    export = Path(args.export_dir or f"{scan.stem or scan.name}_view")
    if args.port:
        check_port_free(args.host, args.port)
    if scan.is_dir():
        points, colors, scorer, name = load_segment_result(scan)
        frame = detect_frame(points, up=args.up, unit=args.units)   # shown upright
        state = ViewState(frame.apply(points), colors, scorer, export_points=points)
        server = ViewerServer(state, host=args.host, port=args.port, title=name,
                              export_dir=export, classes=", ".join(scorer.names))
        server.set_status("saved segmentation (no model: queries and new class lists need "
                          "`xmask3d view SCAN`)")
        server.refresh()
        return server, None
    names = parse_names(args.classes, what="--classes")
    base = parse_names(args.base_classes, what="--base-classes") if args.base_classes else []
    unknown = [b for b in base if b not in names]
    if unknown:
        raise ConfigError(f"--base-classes: {', '.join(unknown)} not in --classes")
    scene = load_scan(scan)
    find_views(args)                              # refuses bad --views before serving
    from xmask3d.apps.inference import load_inference_model

    lm = load_inference_model(args.ckpt, config=args.config, overrides=args.overrides,
                              device=args.device)
    # the model runs on, and the page shows, the scan in its canonical frame (metres, +z up,
    # floor at 0, as `segment` does); Export PLY writes the scan's own coordinates
    frame = detect_frame(scene.points, up=args.up, unit=args.units)
    logger.info("frame: unit %s, up %s%s", frame.unit, frame.up,
                "".join(f"; {n}" for n in frame.notes))
    upright, _ = to_frame(frame, scene, [])
    check_span(scan, upright.points, lm.cfg.data.voxel_size, frame.unit)
    state = ViewState(upright.points, scene.colors, export_points=scene.points)
    server = ViewerServer(state, host=args.host, port=args.port, title=scan.name,
                          export_dir=export, classes=", ".join(names), base=", ".join(base))
    worker = threading.Thread(target=_first_run, args=(args, lm, upright, state, server, names,
                                                       base, frame),
                              daemon=True, name="view-features")
    worker.start()
    return server, worker


def _first_run(args, lm, scene, state, server, names, base, frame) -> None:
    """Compute the point features (progress on the page), then segment with the classes."""
    import time

    from xmask3d.apps.other import background_words
    from xmask3d.errors import XMask3DError
    from xmask3d.viewer.features import compute_point_features, make_vocabulary
    from xmask3d.viewer.state import ModelScorer

    # the 2D masks are chosen with the words `segment` would score: the classes and the
    # background words they do not name
    hidden = list(background_words(names, enabled=not getattr(args, "no_other", False)))
    vocab = make_vocabulary(lm, [*names, *hidden], [*base, *hidden] if base else [])
    start = time.perf_counter()
    try:
        server.report(0, 1, "starting")
        feats = compute_point_features(args, lm, scene, vocab, report=server.report,
                                       frame=frame)
        state.set_scorer(ModelScorer(feats, lm, other=not getattr(args, "no_other", False)))
        state.segment(", ".join(names), ", ".join(base))
        server.refresh()
        server.finish_progress(f"ready: point features of {scene.num_points:,} points "
                               f"({feats.path}) in {time.perf_counter() - start:.1f} s")
    except XMask3DError as exc:
        server.finish_progress(f"\u26a0 {exc}")
    except Exception as exc:  # noqa: BLE001 - the page must say what went wrong
        logger.exception("first run failed")
        server.finish_progress(f"\u26a0 internal error: {type(exc).__name__}: {exc}")


def run(args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C."""
    server, _ = start_viewer(args)
    print(f"xmask3d view: open {server.url} in a browser (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.stop()
    return 0
