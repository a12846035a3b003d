"""The report's PNG plots: training loss over steps, and the held-out metric over steps.

Matplotlib draws off-screen (Agg). Text can be Chinese (a run folder, a category, a
metric label): the plots use the first CJK font installed, among the common system
fonts and those of the ``mplfonts`` package (the ``cjk`` extra, installed with ``dev``).
Without one, Chinese characters would come out as empty boxes; a warning then says how
to install a font.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import warnings
from pathlib import Path

__all__ = ["cjk_fonts", "plot_loss", "plot_metric"]

_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "Arial Unicode MS",
)
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


@functools.cache
def cjk_fonts() -> tuple[str, ...]:
    """Installed font families that draw Chinese, best first (registers mplfonts' fonts)."""
    from matplotlib import font_manager

    spec = importlib.util.find_spec("mplfonts")
    if spec is not None and spec.origin:
        for path in sorted((Path(spec.origin).parent / "fonts").glob("*.[ot]tf")):
            if "Serif" not in path.name and "Mono" not in path.name:
                font_manager.fontManager.addfont(str(path))
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(name for name in _CJK_FAMILIES if name in installed)


def _figure(texts: list[str]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fonts = cjk_fonts()
    if not fonts and any(_CJK.search(t) for t in texts):
        warnings.warn(
            "no Chinese font found: Chinese text in the report's plots shows as boxes; "
            "install one with `pip install mplfonts` (or the system's fonts-noto-cjk)",
            stacklevel=3,
        )
    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["font.sans-serif"] = [*fonts, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_loss(path: Path, steps: list[int], losses: list[float], title: str) -> None:
    """Training loss (per supervised token) over optimizer steps."""
    plt, fig, ax = _figure([title])
    ax.plot(steps, losses, color="tab:blue", linewidth=1.2)
    ax.set_yscale("log" if losses and min(losses) > 0 and max(losses) / min(losses) > 20 else "linear")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(plt, fig, path)


def plot_metric(path: Path, series: dict[str, tuple[list[int], list[float]]], label: str, title: str) -> None:
    """Held-out metric (on a 0-100 scale) over steps, one line per series (e.g. overall
    and per category); step 0 is the base model."""
    plt, fig, ax = _figure([title, label, *series])
    for name, (steps, values) in series.items():
        ax.plot(steps, values, marker="o", markersize=3, linewidth=1.2, label=name)
    ax.set_xlabel("step (0: base model)")
    ax.set_ylabel(label)
    ax.set_ylim(0, 100)  # exact match in percent and ROUGE/BLEU x 100 share one scale
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    _save(plt, fig, path)
