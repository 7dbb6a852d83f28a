"""What a gradient check found: the report, its rows and the printed table."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import NamedTuple

__all__ = ["Comparison", "ComponentCheck", "GradientCheckError", "GradientReport", "GradientRow", "Tolerances"]


class GradientCheckError(AssertionError):
    """Raised by :meth:`GradientReport.raise_if_failed`; the message is the whole report."""


class Tolerances(NamedTuple):
    """The tolerances a report used, and why.

    An error is ``max |a - b|`` over a row divided by the row's scale: its
    largest entry ``max(|a|, |b|)``, but at least ``sqrt(eps) *`` the largest
    gradient entry of the whole network (so rows that are pure rounding noise
    do not fail). A row passes when that scaled error is at most ``same``
    (hand-written vs autodiff) or ``fd`` (anything vs finite differences;
    there the scale is at least ``fd_atol / fd``, since rounding in the
    differences is absolute, about ``eps64 |L| / h``).
    """

    dtype: str
    same: float
    fd: float
    fd_atol: float
    fd_step: float
    why: str


class Comparison(NamedTuple):
    """One gradient compared with a reference over one parameter (or one building block).

    Attributes:
        max_abs: ``max |a - b|``.
        max_rel: ``max |a - b| / max(|a|, |b|)`` entry by entry (0 where both are 0).
        worst: index of the entry with the largest absolute error.
        error: ``max_abs`` divided by the row's scale; compared with ``tol``.
        tol: the tolerance on ``error``.
        ok: whether ``error <= tol``.
        checked: how many entries were compared.
        skipped: entries left out (finite differences across a kink).
    """

    max_abs: float
    max_rel: float
    worst: tuple[int, ...]
    error: float
    tol: float
    ok: bool
    checked: int
    skipped: int = 0


class GradientRow(NamedTuple):
    """The checks of one parameter: ``layer``'s ``W`` or ``b``."""

    layer: int
    param: str
    shape: tuple[int, ...]
    manual_vs_autodiff: Comparison
    manual_vs_fd: Comparison | None
    autodiff_vs_fd: Comparison | None

    @property
    def ok(self) -> bool:
        return all(c is None or c.ok for c in self[3:])


class ComponentCheck(NamedTuple):
    """A building block checked on its own: a layer's activation or the loss."""

    name: str
    layer: int | None
    comparison: Comparison

    @property
    def ok(self) -> bool:
        return self.comparison.ok


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """What :func:`check_gradients` found; ``print(report)`` shows it as a table.

    Attributes:
        rows: one :class:`GradientRow` per layer and parameter, ``W`` then ``b``.
        components: each layer's activation and the loss, checked on their own.
        jit: the hand-written gradients under ``jax.jit`` vs called plainly
            (``None`` when not asked for).
        tolerances: the :class:`Tolerances` used.
        loss: the loss at ``params``.
        batch: the batch size, or ``None`` for one example.
        diagnosis: where a wrong gradient enters, in words.
    """

    rows: tuple[GradientRow, ...]
    components: tuple[ComponentCheck, ...]
    jit: Comparison | None
    tolerances: Tolerances
    loss: float
    batch: int | None
    diagnosis: str

    @property
    def ok(self) -> bool:
        """True when every row, every building block and the jit check pass."""
        return all(r.ok for r in self.rows) and all(c.ok for c in self.components) and (
            self.jit is None or self.jit.ok
        )

    @property
    def failures(self) -> tuple[GradientRow, ...]:
        """The rows that fail."""
        return tuple(r for r in self.rows if not r.ok)

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` with the whole report if anything fails."""
        if not self.ok:
            raise GradientCheckError("gradient check failed\n" + str(self))

    def __str__(self) -> str:
        return _format(self)


def _fmt_cmp(label: str, c: Comparison, worst_width: int) -> str:
    verdict = "ok" if c.ok else "FAIL"
    skipped = f"  ({c.skipped} across a kink, not counted)" if c.skipped else ""
    return (f"{label:<19}{c.max_abs:>9.1e}{c.max_rel:>9.1e}  {str(list(c.worst)):<{worst_width}}"
            f"{c.error:>9.1e}{c.tol:>9.1e}{c.checked:>8}  {verdict}{skipped}")


def _comparisons(row) -> list[tuple[str, Comparison]]:
    comps = [("manual vs jax.grad", row.manual_vs_autodiff), ("manual vs FD", row.manual_vs_fd),
             ("jax.grad vs FD", row.autodiff_vs_fd)]
    return [(label, c) for label, c in comps if c is not None]


def _format(report: GradientReport) -> str:
    tol = report.tolerances
    where = "one example" if report.batch is None else f"a batch of {report.batch}"
    # Columns as wide as their widest entry, (128, 784) or [127, 783], with the small
    # shapes' widths as the least.
    shape_width = max([8] + [len(str(r.shape)) + 2 for r in report.rows])
    worst_width = max([10] + [len(str(list(c.worst))) + 1 for r in report.rows
                              for _, c in _comparisons(r)])
    head_width = 12 + shape_width
    lines = [
        f"gradient check: {len({r.layer for r in report.rows})} layers, {where}, {tol.dtype}, "
        f"loss {report.loss:.6g}",
        f"{'layer param shape':<{head_width}}{'comparison':<19}{'max abs':>9}{'max rel':>9}  "
        f"{'worst at':<{worst_width}}{'error':>9}{'tol':>9}{'entries':>8}  verdict",
    ]
    for r in report.rows:
        head = f"{r.layer:<6}{r.param:<6}{str(r.shape):<{shape_width}}"
        for i, (label, c) in enumerate(_comparisons(r)):
            lines.append((head if i == 0 else " " * head_width) + _fmt_cmp(label, c, worst_width))
    lines.append("building blocks (hand-written rule vs jax.vjp / jax.grad):")
    for c in report.components:
        lines.append(f"  {c.name:<50} max abs {c.comparison.max_abs:.1e}  "
                     f"error {c.comparison.error:.1e}  {'ok' if c.ok else 'FAIL'}")
    if report.jit is not None:
        lines.append(f"  backprop jitted vs plain{'':<26} max abs {report.jit.max_abs:.1e}  "
                     f"error {report.jit.error:.1e}  {'ok' if report.jit.ok else 'FAIL'}")
    lines += textwrap.wrap("error = max abs / row scale. Tolerances: " + tol.why, 100)
    lines += textwrap.wrap(("PASS: " if report.ok else "FAIL: ") + report.diagnosis, 100)
    return "\n".join(lines)
