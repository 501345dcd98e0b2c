"""Experiment tab (teaching): train a method on the world for a few hundred steps, at a chosen noise
rate, in a background thread (one run at a time per world: the machine is shared), with a live loss
curve. The finished model joins the world's registry, so it appears in Search, Many languages,
Consistency, Projection and the Leaderboard for every user, labelled "trained here"."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from ccr_core.dashboard.world import InputError, World, default_train_config

STEP_LIMITS = (5, 2000)
NOISE_LIMITS = (0.0, 0.9)


@dataclass
class Job:
    id: str
    method: str
    noise: float
    steps: int
    run_dir: Path
    status: str = "starting"  # starting, running, done, failed, stopped
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    message: str = ""
    model_name: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    def status_markdown(self) -> str:
        elapsed = (self.finished or time.time()) - self.started
        head = {"starting": "Preparing", "running": "Training", "done": "Finished ✓", "failed": "Failed ✗", "stopped": "Stopped"}[self.status]
        text = f"**{head}** `{self.method}` with noise {self.noise:g}: step {self.step}/{self.steps}, {elapsed:.0f} s"
        if self.losses:
            text += f", loss {self.losses[-1][1]:.4f}"
        if self.model_name:
            text += f".\n\nThe model **{self.model_name}** (trained here) is now in Search, Many languages, Consistency, Projection and the Leaderboard."
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
            fig.add_trace(go.Scatter(x=steps, y=losses, mode="lines", name="loss (per step)", line=dict(color="#9ecae9")))
            smooth, run = [], None
            for value in losses:
                run = value if run is None else 0.9 * run + 0.1 * value
                smooth.append(run)
            fig.add_trace(go.Scatter(x=steps, y=smooth, mode="lines", name="moving average", line=dict(color="#4C78A8", width=3)))
        fig.update_layout(template="plotly_white", height=360, xaxis_title="optimiser step", yaxis_title="training loss",
                          title=f"Training loss: {self.method}, noise {self.noise:g}", xaxis=dict(range=[0, self.steps]),
                          legend=dict(orientation="h", y=-0.25), margin=dict(t=60, l=50, r=20, b=40))
        return fig


class Experiments:
    """The world's training runs; at most one at a time."""

    def __init__(self, world: World):
        self.world = world
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._count = 0

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self.jobs.values() if j.active), None)

    def get(self, job_id: str | None) -> Job:
        job = self.jobs.get((job_id or "").strip())
        if job is None:
            raise InputError("No such training run; start one first.")
        return job

    @staticmethod
    def _checked(method: str, noise, steps) -> tuple[float, int]:
        """A known method and numeric noise/steps, or an InputError saying which is wrong."""
        import ccr_core.methods  # noqa: F401  (registers every method)
        from ccr_core.methods import METHODS

        if method not in METHODS:
            raise InputError(f"Unknown method {method!r}; choose one of: {', '.join(METHODS.list())}.")
        try:
            return float(noise), int(steps)
        except (TypeError, ValueError):
            raise InputError("Noise must be a number and steps a whole number.") from None

    def start(self, method: str, noise: float = 0.0, steps: int = 200) -> Job:
        noise, steps = self._checked(method, noise, steps)
        if not NOISE_LIMITS[0] <= noise <= NOISE_LIMITS[1]:
            raise InputError(f"Noise rate must be between {NOISE_LIMITS[0]} and {NOISE_LIMITS[1]}.")
        if not STEP_LIMITS[0] <= steps <= STEP_LIMITS[1]:
            raise InputError(f"Steps must be between {STEP_LIMITS[0]} and {STEP_LIMITS[1]}.")
        if noise > 0:
            try:
                import ccr_core.data.noise  # noqa: F401
            except ImportError:
                raise InputError("Training with injected noise needs ccr_core.data.noise, which this installation lacks; use noise 0.") from None
        self.world.require_training_pairs()
        with self._lock:
            if any(j.active for j in self.jobs.values()):
                raise InputError("A training run is already going in this world (the machine is shared); wait for it or stop it.")
            self._count += 1
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{self._count}"
            job = Job(job_id, method, noise, steps, self.world.cache_dir / "experiments" / job_id)
            self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"ccr-train-{job_id}", daemon=True).start()
        return job

    def stop(self, job_id: str | None) -> Job:
        job = self.get(job_id)
        job.stop_event.set()
        return job

    def _config(self, job: Job):
        from ccr_core.training.train import TrainConfig

        base = default_train_config(self.world)
        same = next((m for m in self.world.model_list() if m.method == job.method and m.shipped), None)
        known = {f.name for f in fields(TrainConfig)}
        cfg = {k: v for k, v in base.items() if k in known}
        from ccr_core.training.data import training_examples

        n_examples = len(training_examples(self.world.bundle, "train", cfg.get("target_langs"), cfg.get("target_sources", ("mt:", "human-translation"))))
        cfg.update(method=job.method, noise=job.noise, max_steps=job.steps, epochs=1_000_000, patience=1_000_000,
                   data=str(self.world.bundle.root), batch_size=max(2, min(int(cfg.get("batch_size", 128)), n_examples)),
                   method_config=dict(same.trained.meta["train_config"].get("method_config", {})) if same else {},
                   # heads over the frozen image backbone, as the tab says: fine-tuning image blocks (the
                   # real-photo world's -ft models) needs every training image's feature maps first -- `ccr train` does that
                   trainable_image_blocks=0, backbone_lr=0.0)
        return TrainConfig.from_dict(cfg)

    def _run(self, job: Job) -> None:
        from ccr_core.dashboard.world import noisy_bench
        from ccr_core.evaluate import load_trained
        from ccr_core.training.train import train

        try:
            cfg = self._config(job)
            config = next(m.text_config for m in self.world.model_list() if m.shipped)
            clean = self.world.benches[config]
            bench = noisy_bench(clean, cfg.noise, cfg.noise_seed) if cfg.noise > 0 else clean
            job.status = "running"

            def on_step(info: dict) -> None:
                job.step = int(info["step"])
                job.losses.append((job.step, float(info["loss"])))

            train(cfg, job.run_dir, self.world.workspace, progress=False, bench=bench, on_step=on_step, should_stop=job.stop_event.is_set)
            name = f"my-{job.method}-noise{job.noise:g}-{self._count_of(job)}"
            trained = load_trained(job.run_dir, clean, name=name)
            self.world.add_model(trained, bench, config, shipped=False)
            job.model_name = trained.name
            job.status = "stopped" if job.stop_event.is_set() else "done"
        except Exception as exc:  # noqa: BLE001 -- reported in the UI; the server keeps running
            job.status = "failed"
            job.message = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()

    def last(self) -> Job | None:
        """The most recent run of this world, if any."""
        with self._lock:
            return list(self.jobs.values())[-1] if self.jobs else None

    def plan(self, method: str, noise: float = 0.0, steps: int = 200) -> str:
        """What a run with these settings will do (Markdown), before it is started."""
        from ccr_core.training.data import training_examples

        noise, steps = self._checked(method, noise, steps)
        cfg = self._config(Job("plan", method, noise, steps, self.world.cache_dir / "experiments" / "plan"))
        n_examples = len(training_examples(self.world.bundle, "train", cfg.target_langs, cfg.target_sources))
        epochs = steps * cfg.batch_size / max(n_examples, 1)
        swapped = f"**{noise:.0%}** of the machine-translated captions swapped with other images' (noisy correspondence)" if noise > 0 else "the clean training pairs (no injected noise)"
        lines = [f"**A run will** train `{method}` for **{steps} steps** of {cfg.batch_size} pairs (≈ {epochs:.2f} passes over the "
                 f"{n_examples:,} training pairs of **{self.world.name}**), on {swapped}, with the shipped models' frozen backbones "
                 f"(`{cfg.text_backbone}`, `{cfg.visual_backbone}`) and learning rate {cfg.lr:g}.",
                 "The loss is drawn live below; the finished model is then searchable in every tab, labelled *trained here*."]
        if self.world.pending_training:
            lines.append(f"_{self.world.training_status}_ Starting a run waits for it.")
        last = self.last()
        if last is not None:
            lines.append(f"Last run: {last.status_markdown()}")
        return "\n\n".join(lines)

    def _count_of(self, job: Job) -> int:
        return list(self.jobs).index(job.id) + 1


def experiments(world: World) -> Experiments:
    """The world's single :class:`Experiments` registry."""
    with world.lock:
        if "experiments" not in world.memo:
            world.memo["experiments"] = Experiments(world)
        return world.memo["experiments"]


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def build_tab(world: World, page) -> None:
    """The Experiment tab: what a run will do, start/stop, live progress and loss; new models reach the other tabs."""
    import gradio as gr

    import ccr_core.methods  # noqa: F401  (registers every method)
    from ccr_core.dashboard.ui import guarded
    from ccr_core.methods import METHODS

    jobs = experiments(world)
    first = "uml" if "uml" in METHODS else METHODS.list()[0]
    with gr.Tab("Experiment", id="experiment"):
        gr.Markdown("Train a method on this world for a few hundred steps, optionally with injected noisy correspondence, and watch "
                    "the loss. The new model then appears next to the shipped ones in every tab (for every user of this server).")
        with gr.Row():
            method = gr.Dropdown(METHODS.list(), value=first, label="Method", allow_custom_value=True)
            noise = gr.Slider(0.0, 0.8, value=0.2, step=0.05, label="Noise rate (share of swapped translations)")
            steps = gr.Slider(STEP_LIMITS[0], 1000, value=200, step=5, label="Steps")
        plan = gr.Markdown(_safe_plan(jobs, first, 0.2, 200), elem_id="ex-plan")
        with gr.Row():
            start = gr.Button("Start training", variant="primary", elem_id="ex-start")
            stop = gr.Button("Stop", elem_id="ex-stop")
        job_id = gr.Textbox(label="Run id", interactive=False, elem_id="ex-job")
        status = gr.Markdown(elem_id="ex-status")
        progress = gr.HTML()
        plot = gr.Plot(label="Loss", elem_id="ex-plot")
        timer = gr.Timer(1.0, active=False)

    @guarded(1)
    def show_plan(m, n, s):
        return jobs.plan(m, n, s)

    gr.on([method.change, noise.release, steps.release], show_plan, [method, noise, steps], plan, api_name="train_plan")

    @guarded(5, status_at=1)
    def train_start(m, n, s):
        job = jobs.start(m, n, s)
        return job.id, job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=True)

    start.click(train_start, [method, noise, steps], [job_id, status, progress, plot, timer], api_name="train_start")

    targets = page.choice_targets

    @guarded(4 + len(targets))
    def train_status(jid):
        job = jobs.get(jid)
        ups = page.model_choice_updates() if not job.active else [gr.skip()] * len(targets)
        return (job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=job.active), *ups)

    timer.tick(train_status, job_id, [status, progress, plot, timer, *targets], api_name="train_status")

    @guarded(1)
    def train_stop(jid):
        return jobs.stop(jid).status_markdown() + "\n\nStopping after the current step…"

    stop.click(train_stop, job_id, status, api_name="train_stop")


def _safe_plan(jobs: Experiments, method: str, noise: float, steps: int) -> str:
    try:
        return jobs.plan(method, noise, steps)
    except Exception as exc:  # noqa: BLE001 -- the tab still opens; starting a run reports the problem
        return f"(Could not describe a run: {exc})"
