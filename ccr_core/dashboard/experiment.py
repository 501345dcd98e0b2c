"""Experiment tab (teaching): train a method on the world for a few hundred steps, at a chosen noise
rate, in a background thread (one run at a time per world: the machine is shared), with a live loss
curve and the expected run time shown before it starts. A run belongs to the browser session that
started it: other sessions never see it. A finished run stays private until its owner publishes it
(then it appears in every tab for every user, labelled "trained here"); a stopped run is discarded
unless the owner chose to keep it."""
from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import ccr_core.methods  # noqa: F401  (registers every method)
from ccr_core.dashboard.colours import chart_layout, method_colour
from ccr_core.dashboard.workbenches import noisy_bench
from ccr_core.dashboard.world import InputError, World, default_train_config
from ccr_core.training.inference import load_trained
from ccr_core.methods import METHODS, methods_with
from ccr_core.training.data import training_examples
from ccr_core.training.train import TrainConfig, train

STEP_LIMITS = (5, 2000)
NOISE_LIMITS = (0.0, 0.9)


@dataclass
class Job:
    id: str
    method: str
    noise: float
    steps: int
    run_dir: Path
    owner: str = ""  # the browser session that started it; only it sees the run
    keep: bool = False  # keep the model if the run is stopped early (else it is discarded)
    status: str = "starting"  # starting, running, done, failed, stopped, discarded
    published: bool = False
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    message: str = ""
    model_name: str = ""
    started: float = field(default_factory=time.time)
    first_step_at: float | None = None  # when step 1 ended: before it, the noisy pairs and the trainer were set up
    last_step_at: float | None = None  # when the last step ended: after it, validation, saving and embedding the test set
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    @property
    def stopping(self) -> bool:
        """Stop was pressed and the run has not ended yet (it ends after its current step)."""
        return self.active and self.stop_event.is_set()

    @property
    def finishing(self) -> bool:
        """Every step is done; the model is being validated, saved and embedded."""
        return self.status == "running" and self.step >= self.steps

    def status_markdown(self) -> str:
        elapsed = (self.finished or time.time()) - self.started
        head = {"starting": "Preparing", "running": "Training", "done": "Finished ✓", "failed": "Failed ✗", "stopped": "Stopped",
                "discarded": "Discarded"}[self.status]
        if self.stopping:
            head = "Stopping…"
        elif self.finishing:
            head = "Saving and embedding the test set…"
        text = f"**{head}** `{self.method}` with noise {self.noise:g}: step {self.step}/{self.steps}, {elapsed:.0f} s"
        if self.losses:
            text += f", loss {self.losses[-1][1]:.4f}"
        if self.model_name and self.published:
            text += f".\n\nThe model **{self.model_name}** (trained here) is published: it is in every tab, for every user."
        elif self.model_name:
            text += (f".\n\nThe model **{self.model_name}** is **private to this browser session**: press **Publish** to add it to "
                     "every tab for every user, or **Discard** to delete it.")
        elif self.status == "stopped":
            text += ".\n\nStopped early: the half-trained model was discarded (tick *Keep a stopped run* before stopping to keep one)."
        if self.message:
            text += f"\n\n{self.message}"
        return text

    def progress_html(self) -> str:
        share = 100 * min(self.step, self.steps) / max(self.steps, 1)
        colour = {"failed": "#E45756", "stopped": "#999"}.get(self.status, "#4C78A8")
        return (f'<div class="ccr-progress" style="background:#eee;border-radius:6px;height:18px;width:100%">'
                f'<div style="width:{share:.1f}%;background:{colour};height:18px;border-radius:6px;transition:width .5s"></div></div>'
                f'<div style="font-size:0.85em;color:#555">{self.step} / {self.steps} steps ({share:.0f}%)</div>')

    def loss_figure(self):
        import plotly.graph_objects as go

        fig = go.Figure()
        if self.losses:
            steps, losses = zip(*self.losses)
            fig.add_trace(go.Scatter(x=steps, y=losses, mode="lines", name="loss (per step)", line=dict(color=method_colour(self.method, 0.5))))
            smooth, run = [], None
            for value in losses:
                run = value if run is None else 0.9 * run + 0.1 * value
                smooth.append(run)
            fig.add_trace(go.Scatter(x=steps, y=smooth, mode="lines", name="moving average", line=dict(color=method_colour(self.method), width=3)))
        fig.update_layout(**chart_layout(height=380, xaxis_title="optimiser step", yaxis_title="training loss",
                                         title=f"Training loss: {self.method}, noise {self.noise:g}", xaxis=dict(range=[0, self.steps])))
        return fig


class Experiments:
    """The world's training runs; at most one at a time."""

    def __init__(self, world: World):
        self.world = world
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._count = 0

    def jobs_of(self, owner: str) -> list[Job]:
        with self._lock:
            return [j for j in self.jobs.values() if j.owner == owner]

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self.jobs.values() if j.active), None)

    def get(self, job_id: str | None, owner: str = "") -> Job:
        """The run with that id, if ``owner`` started it (another session's run is not found either)."""
        job = self.jobs.get((job_id or "").strip())
        if job is None or job.owner != owner:
            raise InputError("No such training run in this browser session; start one first.")
        return job

    @staticmethod
    def _checked(method: str, noise, steps) -> tuple[float, int]:
        """A known method and numeric noise/steps, or an InputError saying which is wrong."""
        if method not in METHODS:
            raise InputError(f"Unknown method {method!r}; choose one of: {', '.join(METHODS.list())}.")
        try:
            return float(noise), int(steps)
        except (TypeError, ValueError):
            raise InputError("Noise must be a number and steps a whole number.") from None

    def start(self, method: str, noise: float = 0.0, steps: int = 200, owner: str = "", keep: bool = False) -> Job:
        noise, steps = self._checked(method, noise, steps)
        if not NOISE_LIMITS[0] <= noise <= NOISE_LIMITS[1]:
            raise InputError(f"Noise rate must be between {NOISE_LIMITS[0]} and {NOISE_LIMITS[1]}.")
        if not STEP_LIMITS[0] <= steps <= STEP_LIMITS[1]:
            raise InputError(f"Steps must be between {STEP_LIMITS[0]} and {STEP_LIMITS[1]}.")
        self.world.require_training_pairs()
        with self._lock:
            if any(j.active for j in self.jobs.values()):
                raise InputError("A training run is already going on this server (the machine is shared); wait for it to finish.")
            self._count += 1
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{self._count}"
            job = Job(job_id, method, noise, steps, self.world.cache_dir / "experiments" / job_id, owner=owner, keep=bool(keep))
            self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"ccr-train-{job_id}", daemon=True).start()
        return job

    def stop(self, job_id: str | None, owner: str = "", keep: bool | None = None) -> Job:
        """Stop a run after its current step; it is discarded then unless ``keep`` (or the run's own setting)."""
        job = self.get(job_id, owner)
        if keep is not None:
            job.keep = bool(keep)
        job.stop_event.set()
        return job

    def publish(self, job_id: str | None, owner: str = "") -> Job:
        """Make the run's model every user's: it joins every tab, labelled "trained here"."""
        job = self.get(job_id, owner)
        if not job.model_name or job.status == "discarded":
            raise InputError("This run has no model to publish (it is still training, failed or was discarded).")
        self.world.model(job.model_name, owner).owner = None
        job.published = True
        return job

    def discard(self, job_id: str | None, owner: str = "") -> Job:
        """Delete the run's model and files (a published model stays: other users may be looking at it)."""
        job = self.get(job_id, owner)
        if job.active:
            raise InputError("Stop the run first.")
        if job.published:
            raise InputError("This model is published; other users may be using it, so it stays until the server restarts.")
        self._discard(job)
        return job

    def _discard(self, job: Job) -> None:
        if job.model_name:
            self.world.remove_model(job.model_name)
        job.model_name = ""
        job.status = "discarded"
        shutil.rmtree(job.run_dir, ignore_errors=True)

    def _config(self, job: Job):
        base = default_train_config(self.world)
        same = next((m for m in self.world.model_list() if m.method == job.method and m.shipped), None)
        known = {f.name for f in fields(TrainConfig)}
        cfg = {k: v for k, v in base.items() if k in known}
        n_examples = len(training_examples(self.world.bundle, "train", cfg.get("target_langs"), cfg.get("target_sources", ("mt:", "human-translation"))))
        cfg.update(method=job.method, noise=job.noise, max_steps=job.steps, epochs=1_000_000, patience=1_000_000,
                   data=str(self.world.bundle.root), batch_size=max(2, min(int(cfg.get("batch_size", 128)), n_examples)),
                   method_config=dict(same.trained.meta["train_config"].get("method_config", {})) if same else {},
                   # heads over the frozen image backbone, as the tab says: fine-tuning image blocks (the
                   # real-photo world's -ft models) needs every training image's feature maps first -- `ccr train` does that
                   trainable_image_blocks=0, backbone_lr=0.0)
        return TrainConfig.from_dict(cfg)

    def _run(self, job: Job) -> None:
        try:
            cfg = self._config(job)
            config = next(m.backbones for m in self.world.model_list() if m.shipped)
            clean = self.world.benches[config]
            bench = noisy_bench(clean, cfg.noise, cfg.noise_seed) if cfg.noise > 0 else clean
            job.status = "running"

            def on_step(info: dict) -> None:
                job.step = int(info["step"])
                job.losses.append((job.step, float(info["loss"])))
                job.last_step_at = time.time()
                job.first_step_at = job.first_step_at or job.last_step_at

            train(cfg, job.run_dir, self.world.workspace, progress=False, bench=bench, on_step=on_step, should_stop=job.stop_event.is_set)
            stopped = job.stop_event.is_set()
            if stopped and not job.keep:  # a half-trained model is never kept by accident
                job.status = "stopped"
                shutil.rmtree(job.run_dir, ignore_errors=True)
                return
            name = f"my-{job.method}-noise{job.noise:g}-{self._count_of(job)}"
            trained = load_trained(job.run_dir, clean, name=name)
            self.world.add_model(trained, bench, config, shipped=False, owner=job.owner)
            job.model_name = trained.name
            job.status = "stopped" if stopped else "done"
        except Exception as exc:  # noqa: BLE001 -- reported in the UI; the server keeps running
            job.status = "failed"
            job.message = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()

    def last(self, owner: str = "") -> Job | None:
        """The most recent run of this session, if any."""
        mine = self.jobs_of(owner)
        return mine[-1] if mine else None

    def seconds_per_step(self, method: str) -> tuple[float, str] | None:
        """(seconds per optimiser step, where that comes from): this server's finished runs of the method (their
        steps' own time, set-up and finishing left out), else the shipped checkpoint of it (its recorded training
        time; validation included, so an upper estimate)."""
        runs = [j for j in self._finished_runs() if j.method == method and j.step > 1]
        if runs:
            rates = [(j.last_step_at - j.first_step_at) / (j.step - 1) for j in runs]
            return sum(rates) / len(rates), f"{len(runs)} earlier run(s) of {method} on this server"
        for m in self.world.model_list():
            state = m.trained.meta.get("train_state", {}) if m.method == method else {}
            if state.get("seconds") and state.get("step"):
                return float(state["seconds"]) / int(state["step"]), f"the shipped {m.name}'s {state['step']} steps in {state['seconds']:.0f} s"
        return None

    def _finished_runs(self) -> list[Job]:
        with self._lock:
            return [j for j in self.jobs.values() if j.status == "done" and j.finished and j.first_step_at and j.last_step_at]

    def overhead_seconds(self, noise: float) -> tuple[float, str]:
        """(seconds a run takes besides its steps, where that comes from): set-up (the noisy training pairs, the
        trainer, the first step's warm-up) and finishing (validation, saving, embedding the test gallery and
        captions). Measured on this server's finished runs (any method: it hardly depends on it) when there are
        some, else modelled from the world's size (:func:`modelled_overhead`)."""
        runs = self._finished_runs()
        if runs:
            spent = [(j.first_step_at - j.started) + (j.finished - j.last_step_at) for j in runs]
            return sum(spent) / len(spent), f"set-up and finishing of {len(runs)} earlier run(s)"
        return modelled_overhead(self.world, noise), "set-up and finishing (a first guess until a run here is measured)"

    def expected_seconds(self, method: str, noise: float, steps: int) -> tuple[float, str] | None:
        """(expected wall time of a run, how it was reached): steps × seconds per step + set-up and finishing."""
        rate = self.seconds_per_step(method)
        if rate is None:
            return None
        overhead, why = self.overhead_seconds(noise)
        return rate[0] * steps + overhead, f"{steps} steps at {rate[0]:.3g} s each, from {rate[1]}, plus {overhead:.0f} s of {why}"

    def plan(self, method: str, noise: float = 0.0, steps: int = 200, owner: str = "") -> str:
        """What a run with these settings will do (Markdown), before it is started: data, settings and expected run time."""
        noise, steps = self._checked(method, noise, steps)
        cfg = self._config(Job("plan", method, noise, steps, self.world.cache_dir / "experiments" / "plan"))
        n_examples = len(training_examples(self.world.bundle, "train", cfg.target_langs, cfg.target_sources))
        epochs = steps * cfg.batch_size / max(n_examples, 1)
        swapped = f"**{noise:.0%}** of the machine-translated captions swapped with other images' (noisy correspondence)" if noise > 0 else "the clean training pairs (no injected noise)"
        lines = [f"**A run will** train `{method}` for **{steps} steps** of {cfg.batch_size} pairs (≈ {epochs:.2f} passes over the "
                 f"{n_examples:,} training pairs of **{self.world.name}**), on {swapped}, with the shipped models' frozen backbones "
                 f"(`{cfg.text_backbone}`, `{cfg.visual_backbone}`) and learning rate {cfg.lr:g}.",
                 "The loss is drawn live below. The finished model is **private to this browser session** until you press "
                 "**Publish**; a stopped run is discarded unless *Keep a stopped run* is ticked."]
        expected = self.expected_seconds(method, noise, steps)
        if expected is not None:
            lines.insert(1, f"**Expected run time ≈ {_duration(expected[0])}** ({expected[1]}; longer while the machine is busy).")
        if self.world.training_work.active:
            lines.append(f"_{self.world.training_status}_ Starting a run waits for it.")
        # No "last run" line here: this text is drawn once per settings change, so a run's state would go stale
        # in it; the run's own status line below (updated live) says where a run stands.
        return "\n\n".join(lines)

    def _count_of(self, job: Job) -> int:
        return list(self.jobs).index(job.id) + 1


# What a run costs besides its optimiser steps before this server has measured one: the only figure at hand is
# issue 30's demo-world run (41 s in all for an estimate of 10 s from the steps alone, on 2 loaded cores), so
# about 30 s of set-up (noisy pairs, the trainer) and finishing (validation, saving, embedding the test set).
# One observation, not a per-phase model: from the first finished run on, that run's own measured set-up and
# finishing replace it (Experiments.overhead_seconds).
OVERHEAD_PRIOR_S = 30.0


def modelled_overhead(world: World, noise: float) -> float:
    """Seconds a run spends outside its optimiser steps, before any run was measured on this server."""
    return OVERHEAD_PRIOR_S


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def experiments(world: World) -> Experiments:
    """The world's single :class:`Experiments` registry."""
    with world.lock:
        if "experiments" not in world.memo:
            world.memo["experiments"] = Experiments(world)
        return world.memo["experiments"]


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def build_tab(world: World, page) -> None:
    """The Experiment tab: what a run will do and how long it takes, start/stop, live progress and loss;
    the run is this session's until published."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded, session_of, takes_request

    jobs = experiments(world)
    first = next(iter(methods_with(has_uncertainty=True)), METHODS.list()[0])  # a method with a noise detector (UML)
    with gr.Tab("Experiment", id="experiment") as tab:
        gr.Markdown("Train a method on this world for a few hundred steps, optionally with injected noisy correspondence, and watch "
                    "the loss. Your run is **yours**: nobody else sees it until you publish it.")
        with gr.Row():
            method = gr.Dropdown(METHODS.list(), value=first, label="Method", allow_custom_value=True)
            noise = gr.Slider(0.0, 0.8, value=0.2, step=0.05, label="Noise rate (share of swapped translations)")
            steps = gr.Slider(STEP_LIMITS[0], 1000, value=200, step=5, label="Steps")
        plan = gr.Markdown("", elem_id="ex-plan")
        with gr.Row():
            start = gr.Button("Start training", variant="primary", elem_id="ex-start")
            stop = gr.Button("Stop", elem_id="ex-stop")
            keep = gr.Checkbox(value=False, label="Keep a stopped run", elem_id="ex-keep")
            publish = gr.Button("Publish to every user", elem_id="ex-publish")
            discard = gr.Button("Discard", elem_id="ex-discard")
        job_id = gr.Textbox(label="Run id", interactive=False, elem_id="ex-job")
        status = gr.Markdown(elem_id="ex-status")
        progress = gr.HTML()
        plot = gr.Plot(label="Loss", elem_id="ex-plot")
        timer = gr.Timer(1.0, active=False)

    @takes_request
    @guarded(1)
    def show_plan(m, n, s, request=None):
        return jobs.plan(m, n, s, session_of(request))

    gr.on([tab.select, method.change, noise.release, steps.release], show_plan, [method, noise, steps], plan, api_name="train_plan")

    @takes_request
    @guarded(5, status_at=1)
    def train_start(m, n, s, k, request=None):
        job = jobs.start(m, n, s, owner=session_of(request), keep=k)
        return job.id, job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=True)

    start.click(train_start, [method, noise, steps, keep], [job_id, status, progress, plot, timer], api_name="train_start")

    targets = page.choice_targets
    extra = [page.header] if page.header is not None else []

    @takes_request
    @guarded(4 + len(extra) + len(targets))
    def train_status(jid, request=None):
        job = jobs.get(jid, session_of(request))
        out = [job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=job.active)]
        if job.active or not job.model_name:
            return (*out, *[gr.skip()] * (len(extra) + len(targets)))
        # The run has ended with a model, private to this session: its header counts it and its Search lists it.
        return (*out, *[page.session_header(request)] * len(extra), *page.model_choice_updates(request))

    timer.tick(train_status, job_id, [status, progress, plot, timer, *extra, *targets], api_name="train_status")

    @takes_request
    def show_last_run(request=None):
        """At tab select: this session's latest run, as it stands now (and the poll again while it is going)."""
        job = jobs.last(session_of(request))
        if job is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return job.id, job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=job.active)

    tab.select(show_last_run, None, [job_id, status, progress, plot, timer], api_visibility="private")

    @takes_request
    @guarded(1)
    def train_stop(jid, k, request=None):
        job = jobs.stop(jid, session_of(request), k)
        return job.status_markdown() + ("\n\nStopping after the current step; the model will be kept (private to you)…" if job.keep
                                        else "\n\nStopping after the current step; the half-trained model will be discarded…")

    stop.click(train_stop, [job_id, keep], status, api_name="train_stop")
    @takes_request
    def set_keep(jid, k, request=None):
        _set_keep(jobs, jid, k, request)

    keep.change(set_keep, [job_id, keep], None, api_visibility="private")

    @takes_request
    @guarded(1 + len(targets))
    def train_publish(jid, request=None):
        job = jobs.publish(jid, session_of(request))
        return (job.status_markdown(), *page.model_choice_updates())

    publish.click(train_publish, job_id, [status, *targets], api_name="train_publish")

    @takes_request
    @guarded(1)
    def train_discard(jid, request=None):
        return jobs.discard(jid, session_of(request)).status_markdown()

    discard.click(train_discard, job_id, status, api_name="train_discard")
    page.on_load(lambda: _safe_plan(jobs, first, 0.2, 200), [plan])


def _set_keep(jobs: Experiments, job_id, keep, request) -> None:
    from ccr_core.dashboard.ui import session_of

    try:
        jobs.get(job_id, session_of(request)).keep = bool(keep)
    except InputError:
        pass  # no run yet: the box is read when one starts


def _safe_plan(jobs: Experiments, method: str, noise: float, steps: int) -> str:
    try:
        return jobs.plan(method, noise, steps)
    except Exception as exc:  # noqa: BLE001 -- the tab still opens; starting a run reports the problem
        return f"(Could not describe a run: {exc})"
