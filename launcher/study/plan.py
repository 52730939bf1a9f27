"""The reproduction study as a graph of steps: what each runs, which steps it needs first, and the
record that says it is done.

One definition serves both ways of running it: ``reproduce`` runs the steps one after another here,
``reproduce --submit`` makes each a Slurm job that waits for the jobs of the steps it needs. A step
whose record exists is done and is never run again, so a study resumes where it stands.

Scales (``--scale``): ``small`` is the CPU study (the paper's model at a small size, every run the same
number of steps, see ``reproduce --help``); ``quick`` is the same study in about a third of the steps;
``paper`` is the papers' recipes (the 4 × 1000 model for its 7.5 epochs on the full WMT'14 corpora, depths
1–4, five reversed seeds for the ensembles, beams 1, 2 and 12; the GAN to its epochs); ``tiny`` is the
tiny presets for a few steps each, which checks the machinery and measures nothing.

Every run is counted in steps (or the recipe's epochs), never in minutes: the runs that an ablation
compares have taken the same number of updates, and a study's figures do not depend on how loaded the
machine that ran it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from data_shards.wmt14 import held_out_split, wmt14_root
from launcher.paths import shared_data


@dataclass(frozen=True)
class S2SRun:
    """One s2s training run of the study: its depth, source order and seed."""

    layers: int
    reverse: bool
    seed: int

    @property
    def overrides(self) -> tuple[str, ...]:
        """The s2s job's ``key=value`` arguments for it."""
        reverse = str(self.reverse).lower()
        return f"model.num_layers={self.layers}", f"model.reverse_source={reverse}", f"train.seed={self.seed}"


ARCHITECTURES = {  # --architecture → the s2s job's arguments, at the small and quick scales
    "paper": ("--preset", "small", "model.attention=false", "model.copy=false"),  # the paper's, at small's size
    "small": ("--preset", "small"),  # with attention and copying
}


@dataclass(frozen=True)
class Scale:
    """What a study at one scale trains and evaluates."""

    s2s: tuple[str, ...]  # the s2s job's preset (and model) arguments
    depths: tuple[int, ...]
    main_depth: int  # reversal, beams and ensembles are measured at this depth
    depth_seeds: int  # seeds of every other depth (the main depth has them all)
    plain_seeds: int  # seeds of the main depth in plain source order
    beams: tuple[int, ...]  # on the first two seeds' main models
    eval_beam: int  # every run, and the ensembles
    ensembles: tuple[int, ...]  # sizes: the first K seeds of the main reversed model together
    gan: tuple[str, ...]  # the gan job's arguments
    prepare_wmt14: bool  # download the full corpora first (unless --data-root has them)
    in_domain: bool = False  # dev and test: giga-fren's own val and test splits (else newstest2013 and 2014)
    s2s_extra: tuple[str, ...] = ("eval.every_steps=250",)  # dev perplexity often enough for the curves
    gan_samples: int = 10_000  # evaluate-gan's samples (the paper's 10,000)
    gan_steps_per_epoch: int = 500  # MNIST's 50,000 training images in batches of 100
    gan_recipe_epochs: float = 250.0  # the preset's num_epochs, what a run of gan_epochs 0 trains
    gan_points: int = 8  # checkpoints of the GAN evaluated along its run: Parzen against training time


CPU = dict(depths=(1, 2, 4), main_depth=2, depth_seeds=2, plain_seeds=2, beams=(1, 2, 12), eval_beam=2,
           ensembles=(2,), gan=("--preset", "paper-mnist"), prepare_wmt14=False, in_domain=True)  # fmt: skip
SCALES = {
    "tiny": Scale(("--preset", "tiny"), (1, 2, 4), 2, 2, 2, (1, 2, 12), 2, (2,), ("--preset", "tiny"), False, True,
                  ("eval.every_steps=10",), 500, gan_steps_per_epoch=1000, gan_points=2),
    "quick": Scale(ARCHITECTURES["paper"], **CPU),
    "small": Scale(ARCHITECTURES["paper"], **CPU),
    "paper": Scale(("--preset", "paper"), (1, 2, 3, 4), 4, 1, 1, (1, 2, 12), 12, (2, 5),
                   ("--preset", "paper-mnist"), True, False, ()),
}  # fmt: skip
DEFAULTS = {  # per scale: the settings a flag may change. steps/gan_epochs 0: the recipes' epochs
    "tiny": {"seeds": 2, "steps": 20, "test_sentences": 10, "gan_epochs": 0.02, "classifier_epochs": 1},
    "quick": {"seeds": 2, "steps": 1000, "test_sentences": 500, "gan_epochs": 12.0, "classifier_epochs": 2},
    "small": {"seeds": 2, "steps": 3000, "test_sentences": 1000, "gan_epochs": 80.0, "classifier_epochs": 3},
    "paper": {"seeds": 5, "steps": 0, "test_sentences": 0, "gan_epochs": 0.0, "classifier_epochs": 10},
}


@dataclass(frozen=True)
class Study:
    """One study's settings and folders. ``steps`` (of every s2s run) and ``gan_epochs`` 0: the recipes'
    epochs decide."""

    scale: str
    architecture: str
    seeds: tuple[int, ...]
    steps: int
    test_sentences: int
    gan_epochs: float
    classifier_epochs: int
    work: Path
    out: Path
    data_root: Path | None = None  # raw data (at the paper scale, what prepare-wmt14 wrote)

    @property
    def plan(self) -> Scale:
        return SCALES[self.scale]

    def settings(self) -> dict:
        kept = {k: v for k, v in asdict(self).items() if k not in ("work", "out", "data_root")}
        return json.loads(json.dumps({**kept, "data_root": str(self.data_root) if self.data_root else None}))

    @property
    def shards(self) -> Path:
        """Every step's default data (``$DIST_TRAIN_SHARDS``): sharded once, by the data step."""
        return self.work / "shards"

    @property
    def raw_data(self) -> Path | None:
        if self.data_root is not None:
            return self.data_root
        return self.work / "wmt14-en-fr" if self.plan.prepare_wmt14 else None

    def environment(self) -> dict[str, str]:
        """What every step's process gets in its environment."""
        env = {"DIST_TRAIN_SHARDS": str(self.shards)}
        return env | ({"WMT14_ROOT": str(self.raw_data)} if self.raw_data is not None else {})

    @property
    def dev_shards(self) -> Path | None:
        """The s2s runs' dev set when it is in domain (made by the data step); None: newstest2013's."""
        return self.shards / "giga-fren-val" if self.plan.in_domain else None

    def test_set(self) -> tuple[str, ...]:
        """evaluate's and figures' flags for the test set: giga-fren's own test split at an in-domain scale,
        else newstest2014 (under the study's raw data when it has its own)."""
        if self.plan.in_domain:
            src, ref = held_out_split(wmt14_root(self.raw_data, dict(os.environ), shared_data()), "test")
            return "--src", str(src), "--ref", str(ref)
        return ("--data-root", str(self.raw_data)) if self.raw_data is not None else ()

    def s2s_runs(self) -> dict[str, S2SRun]:
        """Run name → what it trains: every seed of the main depth reversed, the other depths and the plain
        order on their first seeds."""
        scale, runs = self.plan, {}
        for k, seed in enumerate(self.seeds):
            for layers in scale.depths:
                if layers == scale.main_depth or k < scale.depth_seeds:
                    runs[f"reversed-{layers}l-seed{seed}"] = S2SRun(layers, reverse=True, seed=seed)
            if k < scale.plain_seeds:
                runs[f"plain-{scale.main_depth}l-seed{seed}"] = S2SRun(scale.main_depth, reverse=False, seed=seed)
        return runs

    def main_run(self, seed: int) -> str:
        return f"reversed-{self.plan.main_depth}l-seed{seed}"

    def claim_work_dir(self) -> str:
        """Record this study's settings in its work dir; what differs from a study already there, if any."""
        record, mine = self.work / "study.json", self.settings()
        if record.is_file():
            theirs = json.loads(record.read_text())
            return ", ".join(f"{k} {theirs.get(k)} here, {v} asked" for k, v in mine.items() if theirs.get(k, v) != v)
        self.work.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({**mine, "out": str(self.out)}) + "\n")  # where the write step writes
        return ""

    @classmethod
    def of_work_dir(cls, work: Path) -> Study:
        """The study whose settings ``work`` holds (what its Slurm steps run)."""
        settings = json.loads((work / "study.json").read_text())
        root, out = settings.pop("data_root"), Path(settings.pop("out"))
        return cls(**{**settings, "seeds": tuple(settings["seeds"])}, work=work, out=out,
                   data_root=Path(root) if root else None)  # fmt: skip

    @property
    def gan_steps(self) -> int:
        scale = self.plan
        return round((self.gan_epochs or scale.gan_recipe_epochs) * scale.gan_steps_per_epoch)

    def gan_curve(self) -> list[int]:
        """The steps at which the GAN's checkpoints are evaluated: ``gan_points`` evenly spaced, the last
        at the end of its run."""
        points = self.plan.gan_points
        every = max(1, self.gan_steps // points)
        return [every * k for k in range(1, points)] + [self.gan_steps]


@dataclass(frozen=True)
class Step:
    """One step of the study: ``args`` for ``python -m launcher.main`` (empty: done in-process by
    ``reproduce --run-step``), as ``job`` (s2s|gan: the multi-node training scripts; step: one process,
    with a GPU where the cluster has them if ``gpu``), after the steps named in ``after``; done when
    ``record`` exists."""

    name: str
    args: tuple[str, ...]
    record: Path
    after: tuple[str, ...] = ()
    job: str = "step"
    run_dir: Path | None = None  # a training step's run directory
    gpu: bool = False

    def done(self) -> bool:
        return self.record.is_file()


def steps(study: Study) -> list[Step]:
    """The whole study, every step after the ones it needs; the longest (the GAN's training) first, so
    that steps run side by side finish together."""
    work, records, scale = study.work, study.work / "records", study.plan
    graph: list[Step] = []
    if scale.prepare_wmt14 and study.data_root is None:
        graph.append(Step("prepare-wmt14", ("prepare-wmt14", "--out", str(study.raw_data)), records / "prepare.json"))
    graph.append(Step("data", (), records / "data.json", after=tuple(s.name for s in graph)))
    limit = (f"max_steps={study.steps}",) if study.steps else ()
    s2s = ARCHITECTURES[study.architecture] if study.scale in ("quick", "small") else scale.s2s
    gan = gan_steps(study)
    graph += gan[:2]  # its training and the classifier
    dev = ("--dev", str(study.dev_shards)) if study.dev_shards is not None else ()
    for name, run in study.s2s_runs().items():
        run_dir = work / "s2s" / name
        args = ("s2s", *s2s, *dev, "--run-dir", str(run_dir), *limit, "metrics.port=0", *scale.s2s_extra)
        args += run.overrides
        graph.append(Step(f"train/{name}", args, run_dir / "summary.json", ("data",), "s2s", run_dir))
    graph += gan[2:]  # its evaluations
    graph += evaluations(study)
    graph += figure_steps(study)
    graph.append(Step("write", (), records / "write.json", tuple(s.name for s in graph if s.name != "prepare-wmt14")))
    return graph


def evaluate_step(study: Study, name: str, runs: list[str], beam: int) -> Step:
    args = ["evaluate", "--beam", str(beam), "--limit", str(study.test_sentences), "--no-progress", *study.test_set()]
    for run in runs:
        args += ["--checkpoint", str(study.work / "s2s" / run)]
    record = study.work / "evaluations" / f"{name}-beam{beam}.json"
    return Step(f"evaluate/{name}-beam{beam}", tuple(args), record, tuple(f"train/{run}" for run in runs), gpu=True)


def evaluations(study: Study) -> list[Step]:
    """Every run at the scale's beam; the first two seeds' main models at every beam; the ensembles."""
    scale = study.plan
    found = {
        step.name: step for run in study.s2s_runs() for step in [evaluate_step(study, run, [run], scale.eval_beam)]
    }
    for beam in scale.beams:
        for run in (study.main_run(seed) for seed in study.seeds[:2]):  # a beam's gain on two models
            step = evaluate_step(study, run, [run], beam)
            found[step.name] = step
    for size in scale.ensembles:
        members = [study.main_run(seed) for seed in study.seeds[:size]]
        step = evaluate_step(study, "ensemble" if size == 2 else f"ensemble-{size}", members, scale.eval_beam)
        found[step.name] = step
    return list(found.values())


def gan_steps(study: Study) -> list[Step]:
    """The GAN trained for ``gan_epochs``, a checkpoint kept at each point of its curve; the classifier
    behind FCD; every point evaluated (Parzen against training time), the last as ``gan/evaluate``."""
    work, scale = study.work, study.plan
    run_dir, classifier = work / "gan", work / "classifier.pt"
    curve = study.gan_curve()
    limit = (f"max_steps={study.gan_steps}",) if study.gan_epochs else ()
    keep = (f"train.checkpoint_every_steps={curve[0]}", f"train.keep_checkpoints={len(curve) + 16}")
    train = ("gan", *scale.gan, "--run-dir", str(run_dir), *limit, *keep, "metrics.port=0")
    classify = ("train-classifier", "--epochs", str(study.classifier_epochs), "--out", str(classifier), "--no-progress")
    needs = ("gan/train", "gan/classifier")

    def evaluate(step: int, name: str, record: Path) -> Step:
        args = ("evaluate-gan", "--checkpoint", str(run_dir / "checkpoints" / f"step-{step:08d}.pt"),
                "--classifier", str(classifier), "--num-samples", str(scale.gan_samples))  # fmt: skip
        grid = ("--grid", str(record.with_suffix(".png")))
        return Step(name, args + (grid if name != "gan/evaluate" else ()), record, needs, gpu=True)

    points = [evaluate(step, f"gan/curve/step-{step}", work / "gan-curve" / f"step-{step}.json") for step in curve[:-1]]
    return [
        Step("gan/train", train, run_dir / "summary.json", ("data",), "gan", run_dir),
        Step("gan/classifier", classify, work / "classifier.json", ("data",), gpu=True),
        *points,
        evaluate(curve[-1], "gan/evaluate", run_dir / "evaluation.json"),
    ]


def figure_steps(study: Study) -> list[Step]:
    """The papers' figures that need only a checkpoint: s2s Figures 2 and 3 of the first seed's main model
    (on the test sentences, at the scale's beam), the GAN's Figure 3."""
    work, first = study.work, study.main_run(study.seeds[0])
    s2s = [
        "figures",
        "--checkpoint",
        str(work / "s2s" / first),
        "--out",
        str(work / "figures" / "s2s"),
        "--no-progress",
    ]
    s2s += ["--test-sentences", str(study.test_sentences), "--beam", str(study.plan.eval_beam), *study.test_set()]
    gan = ("figures", "--checkpoint", str(work / "gan"), "--out", str(work / "figures" / "gan"), "--no-progress")
    return [
        Step("figures/s2s", tuple(s2s), work / "figures" / "s2s.json", (f"train/{first}",), gpu=True),
        Step("figures/gan", gan, work / "figures" / "gan.json", ("gan/train",), gpu=True),
    ]
