"""Config checking and the command line's error contract: typos and wrong types are named, a resume
with other settings is refused, known failures print one line, bugs keep their traceback."""
import pytest

from lighttrack_nas.cli import run_cli
from lighttrack_nas.config import ConfigError, Field, UnknownNameError, check_section, config_differences
from lighttrack_nas.models import build_supernet
from lighttrack_nas.space.space import SpaceError
from lighttrack_nas.train import SupernetTrainer, TrainingError
from lighttrack_nas.config import load_experiment
from lighttrack_nas.space import experiment_space


@pytest.mark.parametrize("override, message", [
    ({"data": {"generat": False}}, r"data: unknown key\(s\) \['generat'\]; allowed: \['augmentation'"),
    ({"train": {"lr": {"peek": 9}}}, r"train.lr: unknown key\(s\) \['peek'\]; allowed: \['final', 'peak'"),
    ({"data": {"splits": {"val": {"frame": 8}}}}, r"data.splits.val: unknown key\(s\) \['frame'\]"),
    ({"train": {"epochs": "2"}}, r"train.epochs must be an integer >= 1, got '2'"),
    ({"train": {"batch_size": 0}}, r"train.batch_size must be an integer >= 1, got 0"),
    ({"train": {"lr": {"peak": "high"}}}, r"train.lr.peak must be a number >= 0, got 'high'"),
    ({"train": {"momentum": 1.5}}, r"train.momentum must be a number in \[0, 1\], got 1.5"),
    ({"train": {"channels_last": "yes"}}, r"train.channels_last must be a bool, got 'yes'"),
    ({"data": {"workers": -1}}, r"data.workers must be an integer >= 0, got -1"),
    ({"data": {"splits": {"train": {"size": [96]}}}}, r"data.splits.train.size must be \[width, height\]"),
])
def test_config_typos_and_wrong_types_are_named(micro_config, override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(micro_config, override)


def test_space_settings_typos_are_named(micro_config):
    cfg = load_experiment(micro_config, {"space_settings": {"serach_size": 64}})
    with pytest.raises(SpaceError, match=r"unknown setting\(s\) \['serach_size'\].*allowed: \[.*'search_size'"):
        build_supernet(experiment_space(cfg))


def test_config_differences_name_the_changed_leaves():
    saved = {"train": {"batch_size": 4, "threads": 1, "lr": {"peak": 0.1}}, "seed": 0}
    now = {"train": {"batch_size": 2, "threads": 2, "lr": {"peak": 0.1}}, "seed": 0, "extra": 1}
    assert config_differences(saved, now, frozenset({"train.threads"})) == [
        "extra: saved '<absent>', now 1", "train.batch_size: saved 4, now 2"]


def test_resume_with_other_settings_is_refused(micro_config, tmp_path):
    SupernetTrainer(load_experiment(micro_config), tmp_path, max_iters=3, progress=False).train()
    changed = SupernetTrainer(load_experiment(micro_config, {"train": {"batch_size": 2}}), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"other settings \(train.batch_size: saved 4, now 2\)"):
        changed.resume()
    # what does not change the training may differ
    same = SupernetTrainer(load_experiment(micro_config, {"train": {"threads": 1, "log_every": 5}, "data": {
        "splits": {"test": {"sequences": 48, "frames": 60}}}}), tmp_path, progress=False)  # training never reads test
    assert same.resume() and same.iteration == 3
    other_data = SupernetTrainer(load_experiment(micro_config, {"data": {"splits": {"train": {"seed": 5}}}}), tmp_path,
                                 progress=False)
    with pytest.raises(ConfigError, match=r"other settings \(data.splits.train.seed: saved 1, now 5\)"):
        other_data.resume()


def _cli(main, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(main)
    return stop.value.code, capsys.readouterr().err


def test_known_failures_print_one_line_and_bugs_keep_their_traceback(capsys):
    def nan():
        raise TrainingError("loss became nan at iteration 1")

    def unknown():
        raise UnknownNameError("model 'x' is not registered; registered: ['lighttrack']")

    assert _cli(nan, capsys) == (2, "error: loss became nan at iteration 1\n")
    assert _cli(unknown, capsys) == (2, "error: model 'x' is not registered; registered: ['lighttrack']\n")
    with pytest.raises(KeyError):  # a bare KeyError is a bug, not a user error
        run_cli(lambda: {}["arch"])


def test_a_second_run_into_a_locked_folder_stops_with_a_named_error(micro_config, tmp_path, caplog):
    """Two processes never write one run's files at once: a held output folder is refused with the
    holder's pid, a waiting lock (shared stages) waits instead, saying for whom, and the lock goes with
    its process."""
    import logging
    import subprocess
    import sys
    import threading
    import time

    from lighttrack_nas.io import BusyError, locked

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lighttrack_nas.io import locked\n"
                               f"with locked({str(out / '.lock')!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"{out} \(training\): in use by another process \(pid {holder.pid}\)"):
            SupernetTrainer(load_experiment(micro_config), out, max_iters=1, progress=False).train()
        assert not (out / "checkpoint.pt").exists()
        from lighttrack_nas.search.runner import run_search

        with pytest.raises(BusyError, match=r"\(search\): in use by another process"):
            run_search(micro_config, tmp_path / "supernet.pt", out, flops_budget="1G", progress=False)
        threading.Timer(0.5, holder.kill).start()  # the waiter gets the lock once the holder is gone
        with caplog.at_level(logging.INFO, logger="lighttrack_nas.io"), \
                locked(out / ".lock", wait=True, what="seed 2's searches"):
            assert holder.poll() is not None
        assert f"waiting for seed 2's searches: held by another process (pid {holder.pid})" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    with locked(out / ".lock"):  # the killed holder's lock went with it
        pass
    start = time.perf_counter()
    with locked(tmp_path / "shared.lock", wait=True), locked(tmp_path / "other.lock"):
        pass
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("field, value, message", [
    (Field(int, low=1), 0, r"x must be an integer >= 1, got 0"),
    (Field(int, low=1), True, r"x must be an integer >= 1, got True"),
    (Field(low=0, high=1, high_open=True), 1.0, r"x must be a number in \[0, 1\), got 1.0"),
    (Field(low=0, low_open=True), float("nan"), r"x must be a number > 0, got nan"),
    (Field(str, optional=True), 3, r"x must be a str or null, got 3"),
    (Field(choices=("sgd", "adamw")), "adam", r"x: 'adam' is not one of \['sgd', 'adamw'\]"),
])
def test_one_field_validator_names_the_field_and_what_it_allows(field, value, message):
    with pytest.raises(ConfigError, match=message):
        field.check(value, "x")


def test_check_section_names_unknown_missing_and_ill_typed_keys():
    fields = {"a": Field(int, low=0), "b": Field(bool)}
    check_section({"a": 1, "b": False}, fields, "s")
    assert Field(str, optional=True)(None, "x") is None and Field(int)(3, "x") == 3
    for section, message in [({"c": 1}, r"s: unknown key\(s\) \['c'\]; allowed: \['a', 'b'\]"),
                             ({"b": True}, r"s: 'a' is required"), ([1], r"s must be a mapping with keys"),
                             ({"a": -1}, r"s.a must be an integer >= 0, got -1")]:
        with pytest.raises(ConfigError, match=message):
            check_section(section, fields, "s", required=("a",))
