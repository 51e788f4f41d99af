"""``xmask3d import``: run the authors' released XMask3D checkpoints through xmask3d.

Light module (stdlib only at import): the converter is imported inside ``run`` after the
arguments and files are checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import", help="convert an authors' released XMask3D checkpoint (+ SD v1.3 + CLIP) into "
                       "a checkpoint of ours",
        description="Convert the authors' released XMask3D checkpoint into a checkpoint that "
                    "segment / query / eval load. Their file holds neither Stable Diffusion "
                    "nor CLIP: pass the weights they were trained with (docs/import.md).")
    p.add_argument("authors", help="the authors' .pth (torch.save of {epoch, state_dict, ...})")
    p.add_argument("--sd", help="Stable Diffusion v1.3 single file (sd-v1-3.ckpt or .safetensors)")
    p.add_argument("--clip", help="CLIP ViT-L/14: an open_clip/OpenAI weight file (ViT-L-14.pt) "
                                  "or a transformers CLIP folder")
    p.add_argument("--clip-tokenizer", help="folder with the CLIP BPE files vocab.json and "
                                            "merges.txt (needed with a CLIP weight file)")
    p.add_argument("--config", required=True,
                   help="config of the same split, e.g. scannet/b15n4 or scannet200/b170n30")
    p.add_argument("--out", required=True, help="checkpoint to write (report beside it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (repeatable)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="skip (and report) tensors of the authors' file this importer does not "
                        "know instead of refusing the file")
    p.set_defaults(func=run)


def _check_inputs(args: argparse.Namespace) -> list[str]:
    problems = []
    if not args.sd:
        problems.append("--sd is required: the authors' file holds no Stable Diffusion weights "
                        "(they trained with sd-v1-3.ckpt)")
    if not args.clip:
        problems.append("--clip is required: the authors' file holds no CLIP weights (they used "
                        "open_clip ViT-L-14 with the openai weights)")
    for label, value in (("authors' checkpoint", args.authors), ("--sd", args.sd),
                         ("--clip", args.clip), ("--clip-tokenizer", args.clip_tokenizer)):
        if value and not Path(value).exists():
            problems.append(f"{value}: {label} does not exist")
    return problems


def run(args: argparse.Namespace) -> int:
    problems = _check_inputs(args)
    if problems:
        for line in problems:
            print(f"xmask3d import: {line}", file=sys.stderr)
        return 2
    from xmask3d.interop.import_model import import_authors

    out = Path(args.out)
    report = import_authors(
        Path(args.authors), sd=Path(args.sd), clip=Path(args.clip),
        clip_tokenizer=Path(args.clip_tokenizer) if args.clip_tokenizer else None,
        config=args.config, out=out, overrides=list(args.set), allow_unknown=args.allow_unknown)
    print(report.summary())
    print(f"wrote {out} (report: {out.name}.import.json, {out.name}.import.txt)")
    return 0
