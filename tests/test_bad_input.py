"""Bad input as a class: every command, fed missing, empty, wrong-kind and unwritable paths, checkpoints
and shards of the other job, and bad config values, ends with exit 2 and one line saying what is wrong
and naming the input, never a traceback, and changes nothing already written.

The cases are generated: paths from the kinds of bad file, config values from every numeric key of the
jobs' typed configs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dist_train.trainers.gan.trainer import GanConfig
from dist_train.trainers.s2s.trainer import S2SConfig
from launcher.config import ConfigError, _leaf_paths, load_config, preset_file
from launcher.main import main

TINY = ("threads=1", "metrics.port=0", "max_steps=1", "log_every=1")


@pytest.fixture(scope="module")
def world(tmp_path_factory, newstest_small_shards, mnist_5k_shards) -> dict[str, Path]:
    """Real shards and checkpoints of both jobs, and the kinds of bad file."""
    root = tmp_path_factory.mktemp("bad-input")
    s2s_run, gan_run = root / "s2s-run", root / "gan-run"
    assert (
        main(["s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(s2s_run), *TINY]) == 0
    )
    assert main(["gan", "--preset", "tiny", "--data", str(mnist_5k_shards), "--run-dir", str(gan_run), *TINY]) == 0
    (root / "empty.txt").write_text("")
    (root / "notes.txt").write_text("not what was asked for\n")
    (root / "empty-dir").mkdir()
    (root / "a-file-not-a-folder").write_text("a file where a folder must be made\n")
    return {
        "text_shards": newstest_small_shards,
        "image_shards": mnist_5k_shards,
        "s2s_checkpoint": next((s2s_run / "checkpoints").glob("step-*.pt")),
        "gan_checkpoint": next((gan_run / "checkpoints").glob("step-*.pt")),
        "missing": root / "no-such-file",
        "empty_file": root / "empty.txt",
        "text_file": root / "notes.txt",
        "empty_dir": root / "empty-dir",
        "unwritable": root / "a-file-not-a-folder" / "inside",  # root ignores permission bits: a file in the way
        "root": root,
    }


def fingerprint(*folders: Path) -> dict[str, str]:
    """Every file's sha256 under ``folders``: what a failed command must leave as it was."""
    files = [f for folder in folders if folder.exists() for f in sorted(folder.rglob("*")) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


# (command, the input it is given: a key of ``world``, how it is given, what the error line must name)
def path_cases() -> list[tuple[str, str, list[str], str]]:
    shards = {"s2s": ("text_shards", "image_shards"), "gan": ("image_shards", "text_shards")}
    cases = []
    for job, (_, other) in shards.items():
        for bad in ("missing", "empty_dir", "text_file", other):
            cases.append(
                (job, bad, [job, "--preset", "tiny", "--data", "{path}", "--run-dir", "{run}", *TINY], "{path}")
            )
        other_checkpoint = "gan_checkpoint" if job == "s2s" else "s2s_checkpoint"
        own = shards[job][0]
        for bad in ("text_file", "empty_file", other_checkpoint, "missing"):
            args = [job, "--preset", "tiny", "--data", f"{{{own}}}", "--run-dir", "{run}", "--resume", "{path}", *TINY]
            cases.append((job, bad, args, "{path}"))
        args = [job, "--preset", "tiny", "--data", f"{{{own}}}", "--run-dir", "{path}", *TINY]
        cases.append((job, "unwritable", args, "a-file-not-a-folder"))
    cases.append(("s2s", "image_shards", ["s2s", "--preset", "tiny", "--data", "{text_shards}", "--dev", "{path}",
                                          "--run-dir", "{run}", *TINY], "{path}"))  # fmt: skip
    for bad in ("missing", "text_file", "empty_file", "gan_checkpoint"):
        cases.append(("translate", bad, ["translate", "--checkpoint", "{path}", "--input", "{text_file}"], "{path}"))
        cases.append(("evaluate", bad, ["evaluate", "--checkpoint", "{path}", "--src", "{text_file}",
                                        "--ref", "{text_file}"], "{path}"))  # fmt: skip
    cases.append(("translate", "unwritable", ["translate", "--checkpoint", "{s2s_checkpoint}", "--input",
                                              "{text_file}", "--output", "{path}"], "a-file-not-a-folder"))  # fmt: skip
    for bad in ("missing", "text_file", "s2s_checkpoint"):
        cases.append(("evaluate-gan", bad, ["evaluate-gan", "--checkpoint", "{path}"], "{path}"))
    for bad in ("missing", "empty_dir", "text_file"):
        cases.append(("report", bad, ["report", "{path}"], "{path}"))
    for bad in ("missing", "empty_file", "empty_dir"):  # a text file is a corpus; an image folder's are below
        cases.append(("shard-text", bad, ["shard-text", "--src", "{path}", "--tgt", "{text_file}", "--out", "{run}"],
                      "{path}"))  # fmt: skip
    for bad in ("missing", "empty_file", "text_file", "empty_dir"):
        cases.append(("shard-images", bad, ["shard-images", "--input", "{path}", "--out", "{run}"], "{path}"))
    cases.append(("shard-text", "unwritable", ["shard-text", "--src", "{text_file}", "--tgt", "{text_file}", "--out",
                                               "{path}"], "a-file-not-a-folder"))  # fmt: skip
    return cases


@pytest.mark.parametrize("command,bad,argv,named", path_cases(), ids=lambda x: x if isinstance(x, str) else None)
def test_a_bad_path_is_one_line_and_changes_nothing(world, tmp_path, capsys, command, bad, argv, named):
    places = {**{k: str(v) for k, v in world.items()}, "path": str(world[bad]), "run": str(tmp_path / "out")}
    argv = [a.format(**places) for a in argv]
    before = fingerprint(world["root"], world["text_shards"], world["image_shards"])
    try:
        code = main(argv)
    except SystemExit as stop:  # usage errors (one line too)
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, f"{' '.join(argv)} → exit {code}\n{err[-2000:]}"
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named.format(**places) in errors[0], err[-2000:]
    assert fingerprint(world["root"], world["text_shards"], world["image_shards"]) == before
    assert not (tmp_path / "out").exists() or command.startswith("shard"), "a failed run wrote its run directory"


def numeric_keys(config_type) -> list[str]:
    return [key for key, tp in _leaf_paths(config_type).items() if tp in (int, float)]


# keys whose negative values mean something (none yet) would be listed here with the reason
BAD_VALUES = ("-3", "nan", "inf", "x")


@pytest.mark.parametrize("job,config_type", [("s2s", S2SConfig), ("gan", GanConfig)])
def test_every_numeric_key_refuses_negative_non_finite_and_non_numbers_naming_itself(job, config_type):
    accepted, unnamed = [], []
    for key in numeric_keys(config_type):
        for value in BAD_VALUES:
            if key.endswith("seed") and value == "-3":
                continue  # a negative seed is a seed (numpy takes it modulo 2**32)
            try:
                load_config(config_type, files=[preset_file(job, "tiny")], overrides=[f"{key}={value}"])
            except ConfigError as err:
                if key not in str(err):
                    unnamed.append(f"{key}={value}: {err}")
            else:
                accepted.append(f"{key}={value}")
    assert accepted == [], "accepted without a word"
    assert unnamed == [], "refused without naming the key"


def test_a_nan_learning_rate_in_a_toml_file_is_refused_too(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[optim]\nlr = nan\n")
    with pytest.raises(ConfigError, match="optim.lr must be a finite number"):
        load_config(S2SConfig, files=[config])


def test_a_dev_set_with_its_own_vocabulary_is_refused_before_training(world, tmp_path, capsys, data_root):
    """Its ids would be read as other words: dev perplexity computed on them would mean nothing."""
    own = tmp_path / "dev-own-vocab"
    dev = data_root / "wmt14-en-fr" / "dev-plain"
    src, tgt = sorted(dev.glob("*2012*.en")), sorted(dev.glob("*2012*.fr"))
    assert (
        main(["shard-text", "--src", *map(str, src), "--tgt", *map(str, tgt), "--out", str(own), "--no-progress"]) == 0
    )
    capsys.readouterr()
    run = tmp_path / "run"
    argv = ["s2s", "--preset", "tiny", "--data", str(world["text_shards"]), "--dev", str(own), "--run-dir", str(run)]
    assert main([*argv, *TINY]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {own}: has its own src vocabulary") and "--vocab-from" in line
    assert not run.exists()


def test_a_checkpoint_folder_that_cannot_be_written_is_found_before_the_first_step(world, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the checkpoints folder must be\n")
    argv = ["s2s", "--preset", "tiny", "--data", str(world["text_shards"]), "--run-dir", str(run), *TINY]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {run / 'checkpoints'}") and "cannot be written" in line
    assert not (run / "train.jsonl").exists(), "nothing trained, nothing logged"


def test_a_disk_without_room_for_one_checkpoint_is_found_before_the_first_step(tmp_path, monkeypatch):
    from collections import namedtuple

    from data_shards.errors import UserError
    from dist_train.checkpoint import CheckpointFolder

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(UserError, match=r"disk has 0\.00 GB free and one checkpoint takes about 0\.50 GB"):
        CheckpointFolder(tmp_path / "checkpoints").check_room(5 * 10**8)


def test_submit_renders_nothing_for_arguments_the_job_would_refuse(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["submit", "s2s", "--dry-run", "--", "--preset", "tiny", "optim.lr=nan"])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert "#SBATCH" not in out and "optim.lr must be a finite number" in err


def test_shard_images_says_what_it_left_out_and_which_pixel_is_out_of_range(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "in" / "cats").mkdir(parents=True)
    for size in (8, 12):  # two sizes: the gan job would refuse them
        Image.new("L", (size, size), 128).save(tmp_path / "in" / "cats" / f"{size}.png")
    (tmp_path / "in" / "cats" / "notes.txt").write_text("not an image\n")
    assert main(["shard-images", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "left out 1 file(s) that are not images (1 .txt)" in err and '"left_out_files": 1' in out
    assert "several sizes" in err and "--resolution N" in err
    rows = tmp_path / "pixels.csv"
    rows.write_text("0,0,0,0,1\n0,300,0,0,2\n")  # 2×2 grey images and a label; 300 does not fit a byte
    assert main(["shard-images", "--input", str(rows), "--out", str(tmp_path / "csv")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith(f"error: {rows}: line 2: pixel values span 0.0..300.0")


ZERO_MEANS = {  # every numeric key that takes 0, and what 0 means: any other key must refuse it
    "model.dropout": "no dropout",
    "vocab.src_vocab_size": "the whole vocabulary",
    "vocab.tgt_vocab_size": "the whole vocabulary",
    "optim.max_grad_norm": "no clipping",
    "optim.halve_after_epochs": "halve from the start",
    "optim.halve_after_steps": "halve from the start",
    "optim.decay_fraction": "no final decay",
    "optim.min_lr": "no floor",
    "optim.momentum": "plain SGD",
    "optim.final_momentum": "plain SGD",
    "update.ema_decay": "no EMA generator",
    "data.max_tokens": "no token limit",
    "data.micro_batches": "each replica plans its own batches",
    "data.seed": "a seed",
    "data.bucket_pool": "no length bucketing",
    "data.num_workers": "read in the training process",
    "train.num_epochs": "max_steps decides",
    "train.max_steps": "no step limit",
    "train.max_minutes": "no time limit",
    "train.checkpoint_every_steps": "not by steps",
    "train.checkpoint_every_minutes": "not by time",
    "train.threads": "the node's cores ÷ processes",
    "train.seed": "a seed",
    "eval.every_steps": "only at the end",
    "samples.every_steps": "only at the end",
    "samples.seed": "a seed",
    "parallel.chunk_len": "no wavefront",
    "metrics.port": "no metrics server",
    "data.max_retries": "one attempt per file",
    "data.retry_backoff_s": "retry at once",
}


@pytest.mark.parametrize("job,config_type", [("s2s", S2SConfig), ("gan", GanConfig)])
def test_zero_is_refused_wherever_it_means_nothing(job, config_type):
    taken = set()
    for key in numeric_keys(config_type):
        try:
            load_config(config_type, files=[preset_file(job, "tiny")], overrides=[f"{key}=0"])
            taken.add(key)
        except ConfigError as err:
            assert key in str(err), err
    assert taken <= set(ZERO_MEANS), f"0 accepted with no stated meaning: {sorted(taken - set(ZERO_MEANS))}"


def test_src_and_tgt_naming_the_same_file_is_warned(world, tmp_path, capsys):
    text = str(world["text_file"])
    assert main(["shard-text", "--src", text, "--tgt", text, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "warning: --src and --tgt name the same file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "evaluate-gan", "figures", "train-classifier"])
def test_negative_threads_are_one_line_before_any_work(world, capsys, command):
    checkpoint = {"evaluate": "s2s_checkpoint", "figures": "s2s_checkpoint", "evaluate-gan": "gan_checkpoint"}
    given = ["--checkpoint", str(world[checkpoint[command]])] if command in checkpoint else []
    argv = [command, "--threads", "-2", *given]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "--threads -2: give 0 (the cores this process may use) or more" in capsys.readouterr().err
