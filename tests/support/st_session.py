"""A small Streamlit websocket client: one browser tab's session, without a browser.

It speaks the protocol the Streamlit frontend speaks on ``/_stcore/stream``: it sends
``BackMsg.rerun_script`` with the page and the widget states (a text area's value, a button's
trigger) and reads ``ForwardMsg`` s until ``script_finished``, keeping every element the run drew.
Widgets are addressed by their ``key=``, as in AppTest: their ids are learned from the elements.
As the frontend does, a click on (or a change of) a widget drawn inside an ``st.fragment`` asks for a
run of that fragment only.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

ID_PREFIX = "$$ID-"
MAX_MESSAGE_BYTES = 64 * 2**20


@dataclass
class Run:
    """What one script run drew.

    Attributes:
        elements: every element, in the order they arrived.
        status: the ``script_finished`` status name (``FINISHED_SUCCESSFULLY``, or
            ``FINISHED_FRAGMENT_RUN_SUCCESSFULLY`` for a fragment's run), or ``page_not_found``.
        seconds: from sending the request to the end of the run.
        session_id: the server's id for this session.
        fragment_id: the fragment this run asked for ("" for a run of the whole page).
    """

    elements: list[Element] = field(default_factory=list)
    status: str = ""
    seconds: float = 0.0
    session_id: str = ""
    fragment_id: str = ""

    @property
    def ok(self) -> bool:
        """The run finished (a whole page or a fragment) and drew no traceback."""
        return self.status in ("FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY") and not self.exceptions

    def of_type(self, kind: str) -> list[Any]:
        """The elements of one kind (``metric``, ``alert``, ``exception`` ...), as their protos."""
        return [getattr(e, kind) for e in self.elements if e.WhichOneof("type") == kind]

    @property
    def exceptions(self) -> list[str]:
        """Tracebacks shown in the page (``st.exception`` or an uncaught error)."""
        return [f"{e.type}: {e.message}" for e in self.of_type("exception")]

    def alerts(self, level: str) -> list[str]:
        """Bodies of ``st.error`` / ``st.warning`` / ``st.info`` / ``st.success`` boxes (level ``ERROR`` ...)."""
        wanted = Alert.Format.Value(level)
        return [a.body for a in self.of_type("alert") if a.format == wanted]

    def metrics(self) -> dict[str, str]:
        """``st.metric`` values by label."""
        return {m.label: m.body for m in self.of_type("metric")}


class Session:
    """One websocket session on a page of a running app.

    Args:
        base_url: ``http://127.0.0.1:<port>``.
        page: the page's URL path (``text``, ``image-text`` ...).
        timeout_s: the longest one run may take.
    """

    def __init__(self, base_url: str, page: str, timeout_s: float = 120.0) -> None:
        from websockets.sync.client import connect

        self.page = page
        self.timeout_s = timeout_s
        self.session_id = ""
        self.page_script_hash = ""
        self._ids: dict[str, str] = {}
        self._fragments: dict[str, str] = {}
        self._elements: dict[str, Element] = {}
        self._values: dict[str, Any] = {}
        ws_url = base_url.replace("http://", "ws://", 1) + "/_stcore/stream"
        self._stack = ExitStack()
        self._ws = self._stack.enter_context(
            connect(ws_url, subprotocols=["streamlit"], max_size=MAX_MESSAGE_BYTES, open_timeout=timeout_s))

    def close(self) -> None:
        """Close the websocket (the server ends the session)."""
        self._stack.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def widget_id(self, key: str) -> str:
        """The id of the widget created with ``key=key`` in a previous run."""
        try:
            return self._ids[key]
        except KeyError:
            raise KeyError(f"no widget with key {key!r} has been drawn; known: {', '.join(sorted(self._ids))}") from None

    def option(self, key: str, contains: str) -> str:
        """The label of the first option of selectbox/radio ``key`` that contains ``contains`` (what
        ``run(values=...)`` takes for it).

        Raises:
            KeyError: when the widget was not drawn or has no such option.
        """
        self.widget_id(key)
        element = self._elements[key]
        options = getattr(element, element.WhichOneof("type")).options
        try:
            return next(o for o in options if contains in o)
        except StopIteration:
            raise KeyError(f"{key!r} has no option containing {contains!r}; options: {list(options)}") from None

    def _state(self, key: str, value: Any) -> WidgetState:
        state = WidgetState(id=self.widget_id(key))
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            state.string_array_value.data.extend(value)
        elif isinstance(value, (list, tuple)):  # sliders: one number or a range
            state.double_array_value.data.extend(float(v) for v in value)
        elif isinstance(value, bool):
            state.bool_value = value
        elif isinstance(value, int):
            state.int_value = value
        elif isinstance(value, float):
            state.double_value = value
        else:
            state.string_value = str(value)
        return state

    def run(self, values: dict[str, Any] | None = None, click: str | None = None) -> Run:
        """Rerun the page with widget values set (they persist) and optionally a button clicked.

        Args:
            values: new widget values by key (text areas, toggles ...; a list for multiselects and
                sliders, a label from :meth:`option` for selectboxes and radios).
            click: the key of a button to press for this run only.

        Returns:
            The Run, once ``script_finished`` arrives.

        Raises:
            TimeoutError: when the run takes longer than ``timeout_s``.
        """
        self._values.update(values or {})
        message = BackMsg()
        client = message.rerun_script
        client.page_name = self.page
        client.page_script_hash = self.page_script_hash  # once known, as the frontend sends it
        client.widget_states.widgets.extend(self._state(k, v) for k, v in self._values.items())
        if click is not None:
            client.widget_states.widgets.append(WidgetState(id=self.widget_id(click), trigger_value=True))
        client.fragment_id = self._fragment_of([click] if click is not None else list(values or ()))
        started = time.perf_counter()
        self._ws.send(message.SerializeToString())
        run = self._receive(started, whole_page=not client.fragment_id)
        run.session_id, run.fragment_id = self.session_id, client.fragment_id
        return run

    def _fragment_of(self, keys: list[str]) -> str:
        """The fragment that drew all these widgets, as the frontend picks it; "" for a whole-page run."""
        fragments = {self._fragments.get(key, "") for key in keys}
        return fragments.pop() if len(fragments) == 1 else ""

    def _receive(self, started: float, whole_page: bool) -> Run:
        run = Run()
        deadline = started + self.timeout_s
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"/{self.page}: no script_finished within {self.timeout_s:.0f} s")
            msg = ForwardMsg()
            msg.ParseFromString(self._ws.recv(timeout=left))
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id
            elif kind == "navigation" and whole_page:  # st.navigation names the page it runs
                self.page_script_hash = msg.navigation.page_script_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                self._learn(msg.delta.new_element, msg.delta.fragment_id)
                run.elements.append(msg.delta.new_element)
            elif kind == "page_not_found":
                run.status, run.seconds = "page_not_found", time.perf_counter() - started
                return run
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
                if status == "FINISHED_EARLY_FOR_RERUN":
                    continue
                run.status, run.seconds = status, time.perf_counter() - started
                return run

    def _learn(self, element: Element, fragment_id: str) -> None:
        kind = element.WhichOneof("type")
        widget_id = getattr(getattr(element, kind), "id", "") if kind else ""
        if isinstance(widget_id, str) and widget_id.startswith(ID_PREFIX):
            user_key = widget_id[len(ID_PREFIX):].split("-", 1)[-1]
            if user_key != "None":
                self._ids[user_key] = widget_id
                self._fragments[user_key] = fragment_id
                self._elements[user_key] = element
