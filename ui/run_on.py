"""The "Run on" flow every family page shares: this server, a hosted API, or both side by side.

A page hands the flow only what differs: how to load its model here and the task function that takes it
(:class:`Here`), the hosted call (:class:`There`), and how to draw a result. The flow does the rest, the same
way on every page: the two output places, the model's turn in line, progress, errors in one line, keeping the
results in the session, recording them in the run store, and the line that compares the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from core import providers
from core.progress import Progress
from ui.common import friendly_errors, record
from ui.hosted import BOTH, HOSTED, LOCAL, call, hosted_error, outputs
from ui.queue import model_turn

NOT_RUN_HERE = "Not run: this model cannot load on this server (see above)."


@dataclass
class Here:
    """This server's side of a run.

    Attributes:
        load: resolves and loads the model (registry and engine choice); called once per click.
        run: the task function, handed the loaded model: ``run(model)``, or ``run(model, on_progress)`` when
            ``progress`` is set (a keyword). Returns a result with ``measurement`` and ``notes``, or a stream (``stream``).
        turn: what the call is, in a word, for the server's line ("classify").
        busy: the spinner's text.
        progress: the text of a progress bar to draw, fed by the task's :class:`core.progress.Progress` updates.
        stream: ``run`` returns a text stream to write into the page; its ``result`` is the result.
        first_use: the label of a status box that shows a one-time preparation's lines (``load(on_progress=...)``),
            or "" when loading needs none.
        preview_width: how wide a progress update's preview image is drawn, in pixels.
    """

    load: Callable[..., Any]
    run: Callable[..., Any]
    turn: str
    busy: str
    progress: str = ""
    stream: bool = False
    first_use: str = ""
    preview_width: int = 192


@dataclass
class There:
    """The hosted side: ``call(point)`` returns a result (or a text stream, with ``stream``)."""

    point: providers.Endpoint
    call: Callable[[providers.Endpoint], Any]
    what: str
    stream: bool = False


@dataclass
class View:
    """What a page's draw function is told besides the result."""

    side: str  # LOCAL or HOSTED
    narrow: bool  # drawn in half the page, beside the other side
    streamed: bool  # its text was just streamed into the page: do not draw it again
    key: str  # a widget-key prefix for this side
    kept: Any = None  # what the page kept with the run (e.g. the images it was run on)


@dataclass
class RunOn:
    """One section's runs: where they run, where they draw, what is kept in the session.

    Args:
        key: the section's prefix; results live at ``{key}_result`` and ``{key}_hosted_result``.
        where: the "Run on" choice (:func:`ui.hosted.where_picker`).
        page, task: the run store's names for these runs.
        action: what failures are called ("Classification").
    """

    key: str
    where: str
    page: str
    task: str
    action: str
    streamed: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.local_out, self.hosted_out = outputs(self.where)

    @property
    def keys(self) -> dict[str, str]:
        return {LOCAL: f"{self.key}_result", HOSTED: f"{self.key}_hosted_result"}

    def run(self, here: Here | None, there: There | None, *, notes: list[str] = (), params: dict | None = None,
            local_params: dict | None = None, hosted_params: dict | None = None,
            metrics: Callable[[Any], dict | None] | None = None, kept: Any = None,
            result_params: Callable[[Any], dict] | None = None) -> None:
        """Run the chosen sides on one input, keep and record each result.

        Args:
            here, there: the two sides; None for a side that cannot run (this server's says so when both run).
            notes: notes on the input, put before each result's own.
            params: the run's settings, recorded with both results; ``local_params`` with this server's only,
                ``hosted_params`` with the hosted one's only.
            metrics: a result's quality figures for the run store (e.g. word error rate).
            kept: anything to keep with the results for drawing them later (:attr:`View.kept`).
            result_params: settings a result knows only once it ran (e.g. whether it was cancelled), recorded too.
        """
        for stored in (*self.keys.values(), f"{self.key}_kept"):
            st.session_state.pop(stored, None)
        st.session_state[f"{self.key}_kept"] = kept
        self.streamed.clear()
        if self.where != HOSTED:
            with self.local_out:
                if here is None:
                    if self.where == BOTH:
                        st.caption(NOT_RUN_HERE)
                else:
                    self._keep(LOCAL, self._run_here(here), notes, {**(params or {}), **(local_params or {})}, metrics,
                               result_params)
        if self.where != LOCAL and there is not None:
            with self.hosted_out:
                self._keep(HOSTED, self._run_there(there), notes, {**(params or {}), **(hosted_params or {})}, metrics)

    def _run_here(self, here: Here):
        with friendly_errors(self.action), model_turn(here.turn):
            if here.first_use:
                with st.status(here.first_use, expanded=True) as status:
                    model = here.load(on_progress=lambda update: st.write(update.message))
                    status.update(label="Prepared once; later runs start in seconds", state="complete", expanded=False)
            else:
                with st.spinner(here.busy):
                    model = here.load()
            if here.stream:
                stream = here.run(model)
                with st.spinner(here.busy):
                    st.write_stream(stream)
                self.streamed.add(LOCAL)
                return stream.result
            if not here.progress:
                with st.spinner(here.busy):
                    return here.run(model)
            show, slot = progress_view(here.progress, f"{self.key}_progress", here.preview_width)
            with st.spinner(here.busy):
                result = here.run(model, on_progress=show)
            slot.empty()
            st.session_state.pop(f"{self.key}_progress", None)  # finished or failed; a Stop click never gets here
            return result
        return None  # the failure was said in one line

    def _run_there(self, there: There):
        """The hosted call under a spinner; a failure is one line and None (see :func:`ui.hosted.call`)."""
        answer = call(there.point, there.what, there.call)
        if answer is None or not there.stream:
            return answer
        try:
            st.write_stream(answer)
        except providers.HostedError as err:
            hosted_error(err)
            return None
        self.streamed.add(HOSTED)
        return answer.result

    def _keep(self, side: str, result, notes, params: dict, metrics, result_params=None) -> None:
        if result is None:
            return
        result.notes[:0] = list(notes)
        st.session_state[self.keys[side]] = result
        params = {**params, **(result_params(result) if result_params else {})}
        record(result.measurement, self.page, self.task, params, metrics(result) if metrics else None)

    def show(self, draw: Callable[[Any, View], None], compare: Callable[[Any, Any], None] | None = None) -> None:
        """Draw the kept results of the sides now chosen, and ``compare(local, hosted)`` when both are there."""
        results = {}
        for side, out in ((LOCAL, self.local_out), (HOSTED, self.hosted_out)):
            result = st.session_state.get(self.keys[side])
            if result is None or self.where == {LOCAL: HOSTED, HOSTED: LOCAL}[side]:
                continue  # none yet, or an earlier run's in the other mode
            results[side] = result
            view = View(side, self.where == BOTH, side in self.streamed, self.keys[side],
                        st.session_state.get(f"{self.key}_kept"))
            with out:
                for note in result.notes:
                    st.info(note, icon=":material/info:")
                draw(result, view)
        if compare is not None and len(results) == 2:
            compare(results[LOCAL], results[HOSTED])


def progress_view(label: str, state_key: str = "", preview_width: int = 192) -> tuple[Callable[[Progress], None], Any]:
    """A progress bar with a preview slot under it, and the :data:`core.progress.OnProgress` that fills them.

    An update's ``preview`` is drawn under the bar: an image (a diffusion step, ``preview_width`` pixels wide), or
    markdown (the lines of a transcript so far). The last update is kept at ``state_key`` in the session, so a page
    can say where a stopped run was (:func:`stopped_note`). Returns the callback and the slot (empty it when done).
    """
    slot = st.empty()
    box = slot.container()
    bar, preview = box.progress(0.0, text=f"{label} ..."), box.empty()

    def show(update: Progress) -> None:
        if state_key:
            st.session_state[state_key] = (update.done, update.total)
        clock = "" if update.elapsed_s is None else f" · {update.elapsed_s:.1f} s"
        bar.progress(update.fraction, text=update.message or f"{label} {update.done:g} of {update.total:g}{clock}")
        if isinstance(update.preview, str):
            preview.markdown(update.preview)
        elif update.preview is not None:
            preview.image(update.preview, caption="Preview of the current step (approximate)", width=preview_width)

    return show, slot


# --- runs that can be stopped: a Cancel button beside the run button -----------------------------------
def _set(key: str, value) -> None:
    st.session_state[key] = value


def run_buttons(key: str, label: str, disabled: bool = False) -> bool:
    """The run button and a Cancel button beside it; returns whether the run button was clicked.

    A Cancel click sets ``{key}_cancel``, which :func:`stop_requested` reads from inside the running call (the click
    also reruns the page, which interrupts it); :func:`stopped_note` then says where the run stopped.
    """
    run, cancel, _ = st.columns([1, 1, 4])
    clicked = run.button(label, type="primary", key=f"{key}_run", on_click=_set, args=(f"{key}_cancel", False),
                         disabled=disabled)
    cancel.button("Cancel", key=f"{key}_cancel_button", on_click=_set, args=(f"{key}_cancel", True))
    return clicked


def stop_requested(key: str) -> Callable[[], bool]:
    """The :data:`core.progress.ShouldStop` of the run keyed ``key``: True once its Cancel was clicked."""
    return lambda: bool(st.session_state.get(f"{key}_cancel"))


def stopped_note(key: str) -> None:
    """After Cancel: say where the run stopped (its last progress update), or that nothing was running."""
    if st.session_state.get(f"{key}_cancel"):
        st.session_state[f"{key}_cancel"] = False
        step, total = st.session_state.pop(f"{key}_progress", (0, 0))
        if total:
            st.info(f"Cancelled after step {step:g} of {total:g}; nothing was decoded. Change the settings and "
                    "generate again.", icon=":material/cancel:")
        else:
            st.info("Nothing is running.", icon=":material/info:")
