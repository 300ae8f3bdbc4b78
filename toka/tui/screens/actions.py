"""OperatorActions: what the console's keys and commands do.

Each action collects what it needs in a form or a confirmation, then builds the
operation through the Client in a worker thread; the result comes back as a toast
and, through the feed, as new rows. Nothing here changes state directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual import work

from toka.core.errors import IntegrityFailure, TokaError
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime.client import Client
from toka.tui.effect_view import CallRow
from toka.tui.feed import World
from toka.tui.host import VERIFYING
from toka.tui.literal import literal
from toka.tui.screens.confirm import Confirm
from toka.tui.screens.detail import DetailScreen
from toka.tui.screens.forms import (
    Choice,
    GrantForm,
    GrantRequest,
    ObservationForm,
    ObservationRequest,
    ScheduleTaskForm,
    SpawnAgentForm,
    SpawnRequest,
    TaskRequest,
    TimeTravelForm,
)
from toka.tui.screens.invoke_form import (
    InvokeRequest,
    InvokeToolForm,
    invocation_summary,
    invocation_text,
    outcome_text,
)
from toka.tui.screens.resolve_form import ResolveCallForm, ResolveRequest
from toka.tui.screens.verify import VerifyScreen
from toka.tui.view import AgentRow, GrantRow, open_calls_detail
from toka.tui.widgets import ResourceTable

log = logging.getLogger(__name__)


class OperatorActions:
    """The acting half of ConsoleScreen: a mixin that uses the screen's widgets, its
    ``console`` (the app's ConsoleHost services), ``selected_agent()`` and
    ``selected_grant()`` (the selected rows) and ``_update_status()``."""

    world: World | None
    read_only: bool
    at_seq: int | None
    head_seq: int
    open_calls: tuple[CallRow, ...]

    def _agent_choices(self) -> list[Choice]:
        """(``name · id``, id) of every agent that can still be acted on."""
        rows: Iterable[AgentRow] = self.query_one("#agents", ResourceTable).row_data.values()
        return [(literal(f"{a.name} · {a.id}"), a.id) for a in rows if a.status != "terminated"]

    def submit(
        self,
        label: str,
        call: Callable[[Client], Any],
        describe: Callable[[Any], str],
        on_done: Callable[[Any], None] | None = None,
        on_refused: Callable[[TokaError], None] | None = None,
    ) -> None:
        """Run ``call(client)`` in a worker; toast the result or the kernel's refusal."""
        self._submit(label, call, describe, on_done, on_refused)

    @work(thread=True, group="submit")
    def _submit(self, label, call, describe, on_done, on_refused) -> None:
        app, host = self.app, self.console
        try:
            with host.submit_lock:
                host.client.runtime.catch_up()
                result = call(host.client)
        except TokaError as exc:
            app.call_from_thread(
                app.notify, exc.message, title=f"{label}: refused", severity="error", timeout=10
            )
            if on_refused is not None:
                app.call_from_thread(on_refused, exc)
            host.refresh_feed()
            return
        except Exception as exc:
            # A bug, not a refusal: keep the console up and say what broke.
            log.exception("%s failed", label)
            app.notify(
                f"internal error: {type(exc).__name__}: {exc}",
                title=f"{label} failed",
                severity="error",
                timeout=30,
            )
            return
        app.call_from_thread(app.notify, describe(result), title=label, timeout=5)
        if on_done is not None:
            app.call_from_thread(on_done, result)
        host.refresh_feed()

    def action_spawn_agent(self) -> None:
        self.app.push_screen(SpawnAgentForm(self._agent_choices()), self._spawn)

    def _spawn(self, req: SpawnRequest | None) -> None:
        if req is not None:
            self.submit(
                "Spawn agent",
                lambda c: c.spawn_agent(req.name, req.behaviour, parent=req.parent),
                lambda r: f"spawned {r[0]} ({req.name}) at seq {r[1].last_seq}",
            )

    def _selected_agent_id(self) -> str | None:
        agent = self.selected_agent()
        return agent.id if agent else None

    def action_schedule_task(self) -> None:
        form = ScheduleTaskForm(self._agent_choices(), self._selected_agent_id())
        self.app.push_screen(form, self._schedule)

    def _schedule(self, req: TaskRequest | None) -> None:
        if req is not None:
            self.submit(
                "Schedule task",
                lambda c: c.schedule(req.agent, req.description, req.payload),
                lambda o: (
                    f"task {o.first(ev.TaskScheduled).task} for {req.agent} at seq {o.last_seq}"
                ),
            )

    def action_emit_observation(self) -> None:
        form = ObservationForm(self._agent_choices(), self._selected_agent_id())
        self.app.push_screen(form, self._observe)

    def _observe(self, req: ObservationRequest | None) -> None:
        if req is not None:
            self.submit(
                "Emit observation",
                lambda c: c.observe(req.agent, req.data),
                lambda o: f"observation about {req.agent} at seq {o.last_seq}",
            )

    def action_pause_agent(self) -> None:
        agent = self._selected_agent_id()
        if agent is not None:
            self.submit(
                "Pause agent",
                lambda c: c.pause(agent),
                lambda o: f"paused {agent} at seq {o.last_seq}",
            )

    def action_resume_agent(self) -> None:
        agent = self._selected_agent_id()
        if agent is not None:
            self.submit(
                "Resume agent",
                lambda c: c.resume(agent),
                lambda o: f"resumed {agent} at seq {o.last_seq}",
            )

    def action_terminate_agent(self) -> None:
        row = self.selected_agent()
        if row is None:
            return
        agent = row.id
        body = Text.assemble(
            "Terminate ",
            literal(f"{row.name} ({agent})", "bold"),
            "?\n\n",
            f"Its {row.open} open task(s) are cancelled and every grant it holds is revoked, "
            "with everything delegated from them.\nThis cannot be undone.",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.submit(
                    "Terminate agent",
                    lambda c: c.terminate(agent, "terminated from the console"),
                    lambda o: f"terminated {agent} at seq {o.last_seq}",
                )

        self.app.push_screen(Confirm("Terminate agent", body, "Terminate"), answered)

    def action_grant_capability(self) -> None:
        subjects = self._agent_choices()
        subjects.append((literal("operator"), "operator"))
        principal = self.console.client.principal
        if principal != "operator":
            subjects.append((literal(principal), principal))
        form = GrantForm(subjects, self._selected_agent_id())
        self.app.push_screen(form, self._grant)

    def _grant(self, req: GrantRequest | None) -> None:
        if req is not None:
            self.submit(
                "Grant capability",
                lambda c: c.grant(
                    req.subject, req.caps, req.ttl_s, budgets=req.budgets, approve=req.approve
                ),
                lambda o: (
                    f"granted {o.first(ev.CapabilityGranted).jti} to {req.subject} at seq {o.last_seq}"
                ),
            )

    def action_revoke_capability(self) -> None:
        row = self.selected_grant()
        if row is not None:
            self._prepare_revoke(row)

    @work(thread=True, group="revoke")
    def _prepare_revoke(self, row: GrantRow) -> None:
        assert self.world is not None
        cascade = self.world.cascade(row.jti)
        self.app.call_from_thread(self._confirm_revoke, row, cascade)

    def _confirm_revoke(self, row: GrantRow, cascade: list[str]) -> None:
        jti = row.jti
        grants: dict[str, GrantRow] = self.query_one("#grants", ResourceTable).row_data
        body = Text.assemble(
            "Revoke ",
            literal(jti, "bold"),
            " held by ",
            literal(row.subject),
            "?\n",
            literal(row.capabilities, "dim"),
            "\n\n",
        )
        if cascade:
            body.append(f"This also revokes {len(cascade)} grant(s) delegated from it:\n")
            for j in cascade[:12]:
                other = grants.get(j)
                body.append(literal(f"  {j}", "bold"))
                if other:
                    body.append(literal(f"  {other.subject}  {other.capabilities}"))
                body.append("\n")
            if len(cascade) > 12:
                body.append(f"  … and {len(cascade) - 12} more\n")
        else:
            body.append("Nothing else was delegated from it.\n")
        if row.subject == self.console.client.principal:
            body.append(
                literal(
                    f"\nThis is your own grant: {row.subject} loses what it allows.\n",
                    "bold red",
                    multiline=True,
                )
            )
        count = 1 + len(cascade)

        def answered(yes: bool | None) -> None:
            if yes:
                self.submit(
                    "Revoke capability",
                    lambda c: c.revoke(jti, "revoked from the console"),
                    lambda o: "revoked " + ", ".join(o.first(ev.CapabilityRevoked).revoked),
                )

        label = "Revoke" if count == 1 else f"Revoke {count} grants"
        self.app.push_screen(Confirm("Revoke capability", body, label), answered)

    def action_invoke_tool(self) -> None:
        key = self.query_one("#tools", ResourceTable).selected_key()
        if key is not None:
            self._prepare_invoke(key)

    @work(thread=True, group="invoke-form")
    def _prepare_invoke(self, key: str) -> None:
        assert self.world is not None
        found = self.world.tool(key)
        if found is not None:
            self.app.call_from_thread(self._open_invoke, *found)

    def _open_invoke(self, tool, versions: list[str]) -> None:
        form: InvokeToolForm

        def invoke(req: InvokeRequest) -> None:
            from toka.core.tools import invoke_as

            def refused(exc: TokaError) -> None:
                form.show_result(outcome_text(False, f"refused: {exc.message}", None))

            self.submit(
                "Invoke tool",
                lambda c: invoke_as(c, req.tool, req.args, version=req.version),
                invocation_summary,
                on_done=lambda inv: (
                    form.show_result(invocation_text(inv)) if form.is_attached else None
                ),
                on_refused=lambda exc: refused(exc) if form.is_attached else None,
            )

        form = InvokeToolForm(tool, versions, invoke)
        self.app.push_screen(form)

    def action_show_open_calls(self) -> None:
        self.app.push_screen(DetailScreen(open_calls_detail(self.open_calls)))

    def action_resolve_call(self) -> None:
        waiting = [c for c in self.open_calls if c.needs_operator]
        if waiting:
            self.app.push_screen(ResolveCallForm(waiting), self._resolve)

    def _resolve(self, req: ResolveRequest | None) -> None:
        if req is None:
            return

        def recorded(o) -> str:
            resolved = o.first(ev.ToolResolved)
            return (
                f"{resolved.call} ({resolved.tool}) resolved as {resolved.outcome} "
                f"at seq {o.last_seq}"
            )

        self.submit(
            "Resolve call",
            lambda c: c.submit(ops.ResolveCall(req.call, req.outcome, req.note)),
            recorded,
        )

    def action_verify_log(self) -> None:
        screen = VerifyScreen(self.head_seq)
        self.app.push_screen(screen)
        self.console.chain = VERIFYING
        self._update_status()
        self._verify(screen)

    @work(thread=True, group="verify", exclusive=True)
    def _verify(self, screen: VerifyScreen) -> None:
        app = self.app

        def progress(done: int, total: int) -> None:
            app.call_from_thread(
                lambda: screen.progress(done, total) if screen.is_attached else None
            )

        try:
            result = self.console.client.runtime.verify(signatures=True, progress=progress)
        except IntegrityFailure as exc:
            app.call_from_thread(self._verified, screen, False, exc.message, "", exc.seq)
            return
        except TokaError as exc:
            app.call_from_thread(self._verified, screen, False, exc.message, "", None)
            return
        message = f"{result['events']} events, chain intact to seq {result['head_seq']}"
        detail = (
            f"{result['signatures_checked']} signatures and {result['checkpoints']} signed "
            f"checkpoints checked\nhead hash {result['head_hash']}"
        )
        app.call_from_thread(self._verified, screen, True, message, detail, result["head_seq"])

    def _verified(
        self, screen: VerifyScreen, ok: bool, message: str, detail: str, seq: int | None
    ) -> None:
        host = self.console
        if ok:
            host.chain = (f"verified to {seq}", True)
        else:
            host.chain = (f"BROKEN at seq {seq}" if seq else "verification failed", False)
            self.app.notify(
                message, title="Verify log: integrity failure", severity="error", timeout=30
            )
        if screen.is_attached:
            screen.finished(ok, message, detail)
        host.refresh_all_status()

    def action_time_travel(self) -> None:
        head = self.console.live_head()
        self.app.push_screen(TimeTravelForm(head), self._travel)

    def _travel(self, seq: int | None) -> None:
        if seq is not None:
            self._load_past(seq)

    @work(thread=True, group="travel", exclusive=True)
    def _load_past(self, seq: int) -> None:
        app, feed = self.app, self.console.feed
        assert feed is not None
        try:
            batch, world = feed.travel(seq)
        except TokaError as exc:
            app.call_from_thread(app.notify, exc.message, title="Time travel", severity="error")
            return
        app.call_from_thread(self.console.show_past, seq, batch, world, self.read_only)

    def action_leave_time_travel(self) -> None:
        if self.read_only:
            self.app.pop_screen()

    def action_load_demo(self) -> None:
        demo = self.console.demo
        if demo is not None:
            self.submit("Load demo scenario", demo, str)

    def action_collect_garbage(self) -> None:
        self._collect(delete=False)

    @work(thread=True, group="gc", exclusive=True)
    def _collect(self, delete: bool) -> None:
        from toka.core.tools.gc import collect

        app = self.app
        try:
            found = collect(self.console.client.runtime, delete=delete)
        except (TokaError, OSError) as exc:
            app.call_from_thread(app.notify, str(exc), title="Collect garbage", severity="error")
            return
        app.call_from_thread(self._collected, found, delete)

    def _collected(self, found: list, deleted: bool) -> None:
        size = sum(g.size for g in found)
        if deleted or not found:
            done = f"removed {len(found)} files, {size} bytes" if found else "nothing to collect"
            self.app.notify(done, title="Collect garbage")
            return
        kinds: dict[str, int] = {}
        for g in found:
            kinds[g.kind] = kinds.get(g.kind, 0) + 1
        body = Text.assemble(
            f"{len(found)} files, {size} bytes, that nothing in the log needs:\n\n",
            "\n".join(f"  {n} {kind}" for kind, n in sorted(kinds.items())),
            "\n\nRemove them? The log is not touched.",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._collect(delete=True)

        self.app.push_screen(Confirm("Collect garbage", body, "Remove"), answered)
