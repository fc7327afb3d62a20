"""The picture of `!report`: how long each post took to acknowledge what it received over
the period, as a PNG — supervisors read a chart faster than a table.

One row per post: a pale bar to the 90th percentile, a dark bar to the median, and the
figures written beside them (`median 2m · 90% 6m · 3 of 4`). A chart with nothing
acknowledged still is a valid image, saying so.

Pure: figures in, bytes out. matplotlib is imported on first use (starting the bot does
not pay for it) and draws with its Agg renderer, never a display; the PNG carries no
timestamp or software name, so the same figures always give the same bytes.

The chart is asked for by a *render request* queued in the outbox in place of the image
(`chart_request`); the sender draws it just before sending (see `bot.reports`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liaison.commands.chase_render import elapsed
from liaison.commands.notify import OutboxKind
from liaison.commands.render import Notice, notice_content, render_notice
from liaison.commands.report import PostReport
from liaison.commands.texts import text

REPORT_KEY = "org.liaison.report"
"""What a report message is about, machine-readable (the period, the chart)."""
RENDER_KEY = "org.liaison.render"
"""An outbox entry whose content holds this key is a render request, not an event: the
sender replaces it with what it renders to before sending (see `storage.outbox`)."""
ACK_TIMES = "ack_times"
CHART_KIND = OutboxKind.REPORT_CHART
"""The outbox kind of a report's chart."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH_IN = 8.0
DPI = 100
ROW_IN = 0.5
FRAME_IN = 1.6
MAX_ROWS = 60
"""More posts than this (an administrator's report of a large network) are left off the
picture, which says how many; the table above it has them all."""

MEDIAN_COLOUR = "#1f5fa8"
P90_COLOUR = "#a9c6e8"
MUTED_COLOUR = "#6b6b6b"


@dataclass(frozen=True)
class ChartRequest:
    """What to draw: the `!report` figures of `posts` from `since_ms` to `now_ms`."""

    chart: str
    since_ms: int
    now_ms: int
    posts: tuple[str, ...]
    language: str
    period: str

    def content(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The outbox content that stands for the chart until it is drawn."""
        return {RENDER_KEY: {"chart": self.chart, "since_ms": self.since_ms,
                             "now_ms": self.now_ms, "posts": list(self.posts),
                             "language": self.language, "period": self.period},
                **(extra or {})}

    @classmethod
    def of(cls, content: Mapping[str, Any]) -> ChartRequest | None:
        """The request an outbox content holds; None when it holds none, or a broken one."""
        request = content.get(RENDER_KEY)
        if not isinstance(request, Mapping):
            return None
        try:
            posts = request["posts"]
            if not isinstance(posts, list) or not all(isinstance(p, str) for p in posts):
                return None
            found = cls(chart=str(request["chart"]), since_ms=int(request["since_ms"]),
                        now_ms=int(request["now_ms"]), posts=tuple(posts),
                        language=str(request["language"]), period=str(request["period"]))
        except (KeyError, TypeError, ValueError):
            return None
        return found if found.chart == ACK_TIMES else None

    @property
    def filename(self) -> str:
        return f"report-{self.period}.png"


def chart_request(*, since_ms: int, now_ms: int, posts: Sequence[str], language: str,
                  period: str) -> ChartRequest:
    return ChartRequest(chart=ACK_TIMES, since_ms=since_ms, now_ms=now_ms, posts=tuple(posts),
                        language=language, period=period)


@dataclass(frozen=True)
class Chart:
    png: bytes
    width: int
    height: int


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header; ValueError when it is not a PNG."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def image_content(request: ChartRequest, chart: Chart, file: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `m.image` event of a drawn chart, `file` being its encrypted upload (no plain
    `url`); it mentions nobody."""
    return {
        "msgtype": "m.image",
        "body": request.filename,
        "filename": request.filename,
        "file": dict(file),
        "info": {"mimetype": "image/png", "size": len(chart.png), "w": chart.width,
                 "h": chart.height},
        "m.mentions": {},
        REPORT_KEY: {"chart": request.chart, "period": request.period,
                     "since_ms": request.since_ms, "until_ms": request.now_ms},
        **(extra or {}),
    }


def chart_failed_content(language: str, extra: Mapping[str, Any] | None = None
                         ) -> dict[str, Any]:
    """Sent instead of a chart that cannot be drawn (the table went out before it)."""
    notice = render_notice(text("chart.failed", language), language=language)
    return notice_content(notice.text, notice.html, extra=extra)


def chart_not_installed_content(language: str, extra: Mapping[str, Any] | None = None
                                ) -> dict[str, Any]:
    """Sent instead of a chart asked for before matplotlib went away (the table went out)."""
    notice = render_notice(text("chart.not_installed", language), language=language)
    return notice_content(notice.text, notice.html, extra=extra)


def without_chart(notice: Notice, language: str) -> Notice:
    """A report's table with one line more saying that charts are not installed (the
    `charts` extra, matplotlib): what a report is without its picture."""
    line = render_notice(text("chart.not_installed", language), language=language)
    return Notice(text=f"{notice.text}\n{line.text}", html=f"{notice.html}<br>{line.html}",
                  mentions=notice.mentions)


def chart_language(language: str) -> str:
    """The language the chart's words are drawn in. matplotlib neither joins Arabic
    letters nor lays them out right to left, so Arabic would come out as disconnected
    glyphs in the wrong order: an Arabic room's chart is labelled in English (post ids and
    figures are Latin anyway), while the table above it is in Arabic."""
    return "en" if language == "ar" else language


def _unit(longest_ms: int) -> tuple[str, float]:
    """The axis unit for values up to `longest_ms`: its message id and its size in ms."""
    if longest_ms < 2 * 60_000:
        return "chart.unit.seconds", 1000.0
    if longest_ms < 6 * 3_600_000:
        return "chart.unit.minutes", 60_000.0
    return "chart.unit.hours", 3_600_000.0


def _row_label(report: PostReport, language: str) -> str:
    if report.received == 0:
        return text("chart.ack.no_cases", language)
    count = text("chart.ack.count", language, count=report.acknowledged, total=report.received)
    if report.ack_median_ms is None or report.ack_p90_ms is None:
        return count
    return text("chart.ack.figures", language, median=elapsed(report.ack_median_ms),
                p90=elapsed(report.ack_p90_ms), count=count)


def ack_time_chart(reports: Sequence[PostReport], *, period: str, language: str) -> Chart:
    """The PNG of time to acknowledge per post (the order of `reports`, top to bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    words = chart_language(language)
    shown = list(reports)[:MAX_ROWS]
    acknowledged = [r for r in shown if r.ack_p90_ms is not None]
    rows = max(len(shown), 1) if acknowledged else 1
    figure = Figure(figsize=(WIDTH_IN, FRAME_IN + ROW_IN * rows), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(text("chart.ack.title", words, period=period), loc="left", fontsize=12)
    if not acknowledged:
        axes.set_axis_off()
        axes.text(0.5, 0.5, text("chart.ack.empty", words), ha="center", va="center",
                  fontsize=11, color=MUTED_COLOUR, transform=axes.transAxes)
    else:
        _draw_rows(axes, shown, words)
    if len(reports) > len(shown):
        figure.text(0.01, 0.01, text("chart.ack.more", words, count=len(reports) - len(shown)),
                    fontsize=8, color=MUTED_COLOUR)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI,
                   metadata={"Software": None, "Creation Time": None})
    png = buffer.getvalue()
    width, height = png_size(png)
    return Chart(png=png, width=width, height=height)


def _draw_rows(axes: Any, reports: Sequence[PostReport], words: str) -> None:
    from matplotlib.transforms import blended_transform_factory

    longest = max(r.ack_p90_ms or 0 for r in reports)
    unit_id, size = _unit(longest)
    positions = list(range(len(reports)))
    p90 = [(r.ack_p90_ms or 0) / size for r in reports]
    median = [(r.ack_median_ms or 0) / size for r in reports]
    axes.barh(positions, p90, height=0.6, color=P90_COLOUR,
              label=text("chart.ack.p90", words))
    axes.barh(positions, median, height=0.35, color=MEDIAN_COLOUR,
              label=text("chart.ack.median", words))
    beside = blended_transform_factory(axes.transAxes, axes.transData)
    for position, report in zip(positions, reports, strict=True):
        axes.text(1.02, position, _row_label(report, words), va="center", fontsize=8,
                  color="black" if report.acknowledged else MUTED_COLOUR, transform=beside)
    axes.set_yticks(positions, [r.post for r in reports], fontsize=9)
    axes.invert_yaxis()  # the first post on top, as in the table
    axes.set_xlim(0, (max(p90) or 1.0) * 1.05)
    axes.set_xlabel(text("chart.ack.axis", words, unit=text(unit_id, words)))
    axes.legend(loc="lower left", bbox_to_anchor=(1.0, 1.0), ncols=2, fontsize=8,
                frameon=False)  # above the column of figures, clear of the title
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
