"""Progress of a long job: the images done, the steps inside the explain call running now, and
what the rest will cost, told to whoever asked (``progress=`` of :func:`gfi.explain`,
:func:`gfi.explain_folder` and ``gfi eval``'s loop).

* :class:`Progress`: one snapshot; a ``progress=`` callable receives one at every update.
* :class:`Tracker`: what a job drives. It counts images and the steps of each explain call (the
  explainer's ``progress(done, total)`` hook) and estimates the method's cost per image: during
  the first call, its time so far plus the steps left at the rate of the costliest twentieth of
  its steps measured so far; then the first whole call; for the time left, the images finished.
  A method whose later steps cost more than its first (GFI's stage 2 after stage 1) is estimated
  again as soon as they start, and each estimate that differs by more than a quarter from the
  last one said is said.
* :class:`ConsoleReporter`, what ``progress=True`` gives: bars on a terminal; in a log (a file, a
  pipe, CI) occasional plain lines, never a carriage return or a cursor escape.

``progress`` arguments: None or False (silent), True (a :class:`ConsoleReporter` on stderr), or a
callable taking a :class:`Progress` (e.g. an object with ``__call__``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any, Literal, Union

log = logging.getLogger(__name__)

Event = Literal["start", "step", "call", "image", "message", "end"]
Reporter = Callable[["Progress"], Any]
ProgressLike = Union[bool, Reporter, None]  # noqa: UP007 - a runtime alias

#: a new estimate is said when it differs from the last one said by more than this fraction
CHANGE = 0.25
#: steps of one call measured together (a window): this fraction of the call's steps, at least 1
WINDOW = 1 / 20


@dataclass(frozen=True)
class Progress:
    """One snapshot of a job's progress.

    ``event`` says what changed: ``start``, ``step`` (inside an explain call), ``call`` (an explain
    call ended), ``image`` (``done`` grew; ``record`` is the image's record in a folder job),
    ``message`` (a sentence in ``message``, e.g. a new cost estimate), ``end``."""

    event: Event
    desc: str  # what runs: ``method NAME``, or ``EXPERIMENT, method NAME``
    done: int = 0  # images finished (explained or failed)
    total: int = 0  # images of the job (``done`` included)
    steps: int = 0  # steps done in the explain call running now
    steps_total: int = 0  # steps of that call (0: no call runs, or the method has no steps)
    call_images: int = 0  # images that call explains together
    call_seconds: float = 0.0  # seconds that call has taken so far (at ``call``: in all)
    elapsed: float = 0.0  # seconds since the start
    seconds_per_image: float | None = None  # the method's estimated seconds per image
    seconds_left: float | None = None  # estimated seconds to the end of the job
    message: str | None = None
    record: dict | None = None


def reporter(progress: ProgressLike) -> Reporter | None:
    """The reporter of a ``progress=`` argument (None: silent)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return ConsoleReporter()
    if callable(progress):
        return progress
    raise TypeError(f"progress must be None, a bool or a callable taking a gfi.progress.Progress, got "
                    f"{type(progress).__name__}")


def tracker(progress: ProgressLike, method: str, desc: str | None = None) -> Tracker:
    """A :class:`Tracker` of ``method``'s work reporting to ``progress`` (a silent one for None or
    False); ``desc`` names the work (default: ``method NAME``)."""
    return Tracker(reporter(progress), method=method, desc=desc)


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.2g} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.2g} h"


class Tracker:
    """Counts a job's images and the steps of its explain calls, estimates the cost, and sends a
    :class:`Progress` to ``report`` at each change (nothing when ``report`` is None).

    A job calls :meth:`start`, then per explain call :meth:`begin_call` / :meth:`end_call` (the
    steps in between arrive through :meth:`hooked`, which sets the explainer's ``progress``), and
    :meth:`advance` per finished image; :meth:`end` at the end (also after an error)."""

    def __init__(self, report: Reporter | None, *, method: str, desc: str | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.report, self.method, self.clock = report, method, clock
        self.desc = desc or f"method {method}"
        self.done = self.done0 = self.total = self.steps = self.steps_total = self.call_images = 0
        self.t0 = self.t_call = clock()
        self.costliest: float | None = None  # seconds per step of the costliest window so far
        self._window: tuple[float, int] | None = None  # (time, steps) where the open window began
        self.first_call: float | None = None  # seconds per image of the first whole call
        self.said: float | None = None  # the seconds per image said last
        self._ended = False

    @property
    def active(self) -> bool:
        return self.report is not None

    # -- what the job calls --------------------------------------------------------------------
    def start(self, total: int, done: int = 0) -> None:
        """``total`` images, ``done`` of them finished before (a resumed run)."""
        self.total, self.done = total, done
        self.done0 = done
        self.t0 = self.clock()
        self._send("start")

    def begin_call(self, images: int) -> None:
        """An explain call of ``images`` images starts."""
        self.call_images, self.steps, self.steps_total = images, 0, 0
        self.t_call, self._window = self.clock(), None

    def step(self, done: int, total: int) -> None:
        """The explainer's ``progress(done, total)`` hook."""
        now = self.clock()
        if total != self.steps_total or done < self.steps:  # a new loop inside the same call
            self.steps_total, self._window = total, None
        self.steps = done
        if self._window is None:
            self._window = (now, done)
        elif done - self._window[1] >= max(1, round(total * WINDOW)):
            per_step = (now - self._window[0]) / (done - self._window[1])
            self._window = (now, done)
            if self.costliest is None or per_step > self.costliest:
                self.costliest = per_step
                if self.first_call is None:  # later calls: whole images measure the cost
                    self._estimate_changed(first=self.said is None)
        self._send("step")

    def end_call(self) -> None:
        first = self.first_call is None and self.call_images > 0
        if first:
            self.first_call = (self.clock() - self.t_call) / self.call_images
        self._send("call")
        if first and self.said is not None and self.total - self.done > self.call_images:
            self._estimate_changed(measured=True)
        self.steps = self.steps_total = self.call_images = 0

    def advance(self, n: int = 1, record: dict | None = None) -> None:
        """``n`` more images are finished (explained, failed or skipped)."""
        self.done += n
        self._send("image", record=record)

    def say(self, message: str) -> None:
        self._send("message", message=message)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._send("end")

    @contextmanager
    def hooked(self, explainer) -> Iterator[None]:
        """The explainer reports its steps here for the duration (a hook of its own still hears
        them, and is put back after)."""
        if not self.active:
            yield
            return
        before = explainer.progress

        def both(done: int, total: int) -> None:
            self.step(done, total)
            if before is not None:
                before(done, total)

        explainer.progress = both
        try:
            yield
        finally:
            explainer.progress = before

    # -- the estimate -------------------------------------------------------------------------
    def call_estimate(self) -> float | None:
        """Seconds per image of the running call: its time so far and its steps to go at the
        costliest rate measured so far."""
        if self.costliest is None or not self.call_images:
            return None
        call = (self.clock() - self.t_call) + (self.steps_total - self.steps) * self.costliest
        return call / self.call_images

    def seconds_per_image(self) -> float | None:
        """The job's seconds per image: measured on the images finished so far (reading, the
        method, writing, all in), else the first whole call's, else the running call projected."""
        if self.done > self.done0:
            return (self.clock() - self.t0) / (self.done - self.done0)
        return self.first_call if self.first_call is not None else self.call_estimate()

    def seconds_left(self) -> float | None:
        per = self.seconds_per_image()
        if per is None:
            return None
        if self.done > self.done0 or not self.call_images:
            return per * max(0, self.total - self.done)
        in_call = max(0.0, per * self.call_images - (self.clock() - self.t_call))
        return in_call + per * max(0, self.total - self.done - self.call_images)

    def _estimate_changed(self, *, first: bool = False, measured: bool = False) -> None:
        """Say the method's cost per image when first measured, and again when it changes."""
        per = self.first_call if measured else self.call_estimate()
        if per is None or (not first and self.said and abs(per / self.said - 1) <= CHANGE):
            return
        left = self.total - self.done
        if first:
            text = (f"method {self.method}: {self.steps_total} steps per call, about {per:.3g} s per image here "
                    f"(measured on its first steps); {left} image(s) to go")
        elif measured:
            text = f"method {self.method}: {per:.3g} s per image here (measured on a whole call)"
            left -= self.call_images
            text += f"; {left} more image(s) to go" if left > 0 else ""
        else:
            text = f"method {self.method}: its later steps cost more: about {per:.3g} s per image here; " \
                   f"{left} image(s) to go"
        sl = self.seconds_left()
        if sl is not None and left > 0:
            text += f", about {duration(sl)} left"
        self.said = per
        self.say(text)

    def _send(self, event: Event, **extra: Any) -> None:
        if self.report is None:
            return
        now = self.clock()
        self.report(Progress(event, self.desc, self.done, self.total, self.steps, self.steps_total, self.call_images,
                             now - self.t_call if self.call_images else 0.0, now - self.t0,
                             self.seconds_per_image(), self.seconds_left(), **extra))


class ConsoleReporter:
    """``progress=True``: on a terminal, a bar of images and a bar of the steps inside the running
    call (tqdm); anywhere else (a file, a pipe, CI logs) plain lines: every message, the end of
    the first call and of the job, and at most one line per ``interval`` seconds in between. Lines
    begin with ``prefix``; ``bars``: None decides by ``stream.isatty()``."""

    def __init__(self, stream: IO[str] | None = None, *, bars: bool | None = None, interval: float = 30.0,
                 prefix: str = "gfi: ") -> None:
        self.stream = stream
        self.bars = bars
        self.interval = interval
        self.prefix = prefix
        self._outer = self._inner = None
        self._stack: ExitStack | None = None
        self._last = 0.0
        self._calls = self._initial = 0

    @property
    def out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr

    def on_terminal(self) -> bool:
        if self.bars is not None:
            return self.bars
        try:
            return bool(self.out.isatty())
        except (AttributeError, ValueError):  # closed, or not a real stream
            return False

    def __call__(self, p: Progress) -> None:
        if p.event == "start":
            self._start(p)
        elif p.event == "message":
            self.line(p.message or "")
        elif self._outer is not None or self._inner is not None:
            self._bars(p)
        elif self._stack is None:
            self._lines(p)
        if p.event == "end":
            self.close()

    def line(self, text: str) -> None:
        """One line on the stream (above the bars on a terminal)."""
        from gfi.data.names import printable

        text = self.prefix + printable(text)
        if self._stack is not None:
            from tqdm import tqdm

            tqdm.write(text, file=self.out)
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def echo(self, text: str, file: IO[str]) -> None:
        """A line of output on ``file`` (e.g. stdout), above the bars on a terminal."""
        if self._stack is not None:
            from tqdm import tqdm

            tqdm.write(text, file=file)
        else:
            file.write(text + "\n")
            file.flush()

    def close(self) -> None:
        for bar in (self._inner, self._outer):
            if bar is not None:
                bar.close()
        self._inner = self._outer = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    # -- a terminal ------------------------------------------------------------------------------
    def _start(self, p: Progress) -> None:
        self.close()
        self._last, self._calls, self._initial = time.monotonic(), 0, p.done
        if not self.on_terminal():
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._stack = ExitStack()
        self._stack.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger("gfi")]))
        if p.total > 1:
            self._outer = tqdm(total=p.total, initial=p.done, unit="img", desc=p.desc, file=self.out,
                               dynamic_ncols=True)
        self._inner = tqdm(total=0, unit="step", desc=f"{p.desc}, this batch", leave=False,
                           position=1 if self._outer is not None else 0, file=self.out, dynamic_ncols=True)

    def _bars(self, p: Progress) -> None:
        if p.event == "step" and self._inner is not None:
            if self._inner.total != p.steps_total or p.steps < self._inner.n:
                self._inner.reset(total=p.steps_total)
            self._inner.update(p.steps - self._inner.n)
        elif p.event == "image" and self._outer is not None:
            self._outer.update(p.done - self._outer.n)
            if p.seconds_per_image is not None:
                self._outer.set_postfix_str(f"method {p.seconds_per_image:.3g} s/img", refresh=False)

    # -- a log -------------------------------------------------------------------------------------
    def _lines(self, p: Progress) -> None:
        now = time.monotonic()
        due = now - self._last >= self.interval
        if p.event == "call":
            self._calls += 1
            if p.steps_total and (self._calls == 1 or due):
                self._say(f"{p.desc}, this batch: {p.steps}/{p.steps_total} steps in {duration(p.call_seconds)}", now)
        elif p.event == "step" and due:
            left = f", about {duration(p.seconds_left)} left" if p.seconds_left is not None else ""
            self._say(f"{p.desc}: {p.done}/{p.total} images, this batch {p.steps}/{p.steps_total} steps{left}", now)
        elif p.event == "image" and (due or p.done == p.total) and p.total > 0:
            new = p.done - self._initial
            rate = f", {p.elapsed / new:.3g} s/img" if new > 0 else ""
            left = f", about {duration(p.seconds_left)} left" if p.seconds_left and p.done < p.total else ""
            self._say(f"{p.desc}: {p.done}/{p.total} images in {duration(p.elapsed)}{rate}{left}", now)

    def _say(self, text: str, now: float) -> None:
        self._last = now
        self.line(text)

