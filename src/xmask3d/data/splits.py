"""Base/novel category splits of the seven open-vocabulary benchmarks, as one data table.

Follows the PLA / RegionPLC / XMask3D configs (method.md §1.3, benchmarks-and-data.md §4.3-§4.4).
Indices refer to the benchmark's full class list (``label_set_names``). ``ignore`` classes are
excluded from training targets and from every metric (otherfurniture for ScanNet20, clutter for
S3DIS); ScanNet200 has none, but can drop its 11 train-only classes from the averages.
"""

from __future__ import annotations

from dataclasses import dataclass

from xmask3d.data.labels import label_set_names, scannet200_names, scannet200_trainonly_names


@dataclass(frozen=True)
class CategorySplit:
    """One benchmark split.

    Attributes:
        name: short id, e.g. ``"scannet_b15n4"``.
        label_set: ``"scannet20"``, ``"scannet200"`` or ``"s3dis"``.
        novel: indices of the novel classes in the full class list.
        ignore: indices excluded from training and evaluation.
    """

    name: str
    label_set: str
    novel: tuple[int, ...]
    ignore: tuple[int, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        return label_set_names(self.label_set)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def base(self) -> tuple[int, ...]:
        excluded = set(self.novel) | set(self.ignore)
        return tuple(i for i in range(self.num_classes) if i not in excluded)

    @property
    def evaluated(self) -> tuple[int, ...]:
        """Indices that enter the metric (base and novel, in index order)."""
        return tuple(sorted(self.base + self.novel))

    @property
    def base_names(self) -> tuple[str, ...]:
        return tuple(self.class_names[i] for i in self.base)

    @property
    def novel_names(self) -> tuple[str, ...]:
        return tuple(self.class_names[i] for i in self.novel)

    def trainonly(self) -> tuple[int, ...]:
        """ScanNet200 classes RegionPLC drops from the averages (empty for other label sets)."""
        if self.label_set != "scannet200":
            return ()
        names = scannet200_names()
        return tuple(names.index(n) for n in scannet200_trainonly_names())


_B170N30 = (11, 22, 27, 30, 31, 39, 41, 43, 47, 56, 62, 64, 81, 87, 93, 95, 99, 102, 112, 114,
            133, 134, 135, 144, 161, 170, 176, 179, 192, 199)
_B150N50 = (5, 14, 16, 21, 25, 27, 30, 37, 40, 41, 43, 51, 53, 56, 60, 64, 69, 73, 80, 81, 84, 86,
            88, 89, 91, 100, 102, 104, 105, 108, 115, 120, 123, 135, 139, 142, 148, 149, 151, 152,
            154, 162, 165, 173, 177, 178, 180, 190, 195, 196)

SPLITS: dict[str, CategorySplit] = {
    s.name: s
    for s in (
        CategorySplit("scannet_b15n4", "scannet20", (5, 9, 12, 16), ignore=(19,)),
        CategorySplit("scannet_b12n7", "scannet20", (3, 4, 6, 9, 10, 17, 18), ignore=(19,)),
        CategorySplit("scannet_b10n9", "scannet20", (9, 10, 11, 12, 14, 15, 16, 17, 18),
                      ignore=(19,)),
        CategorySplit("scannet200_b170n30", "scannet200", _B170N30),
        CategorySplit("scannet200_b150n50", "scannet200", _B150N50),
        CategorySplit("s3dis_b8n4", "s3dis", (5, 7, 9, 10), ignore=(12,)),
        CategorySplit("s3dis_b6n6", "s3dis", (1, 5, 6, 7, 10, 11), ignore=(12,)),
    )
}


def get_split(name: str) -> CategorySplit:
    """Look up a split by name (e.g. ``"scannet_b15n4"``); a clear error lists the known names."""
    try:
        return SPLITS[name]
    except KeyError:
        raise KeyError(f"unknown category split {name!r}; known: {', '.join(SPLITS)}") from None


def format_split_table() -> str:
    """A Markdown table of every split (names and indices), for the docs and ``xmask3d splits``."""
    rows = ["| split | #base/#novel | novel (index: name) | ignore |", "|---|---|---|---|"]
    for s in SPLITS.values():
        novel = ", ".join(f"{i}: {s.class_names[i]}" for i in s.novel)
        ignore = ", ".join(s.class_names[i] for i in s.ignore) or "none"
        rows.append(f"| {s.name} | {len(s.base)}/{len(s.novel)} | {novel} | {ignore} |")
    return "\n".join(rows)
