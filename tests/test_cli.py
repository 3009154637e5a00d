"""tleg_dist/cli.py: every entry point ends the same way, tried with errors real code raises."""

from __future__ import annotations

import socket

import pytest
import yaml
from test_errors import GLOO_TIMEOUT

from tleg_dist import cli
from tleg_dist.config import ConfigError
from tleg_dist.convert import main as convert_main
from tleg_dist.training.ds_config import load_json


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "TLEG_TRACEBACK"):
        monkeypatch.delenv(name, raising=False)


def test_bad_recipe_to_train_exits_usage_with_one_line(tmp_path, capsys):
    from tleg_dist.train import main as train_main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"stage": "learngene", "train": {"epochs": "three"}}))
    assert train_main(["--config", str(recipe)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ConfigError: ") and "train.epochs" in err and "Traceback" not in err, err


def test_the_same_error_after_the_recipe_loaded_is_the_input_s(tmp_path, capsys):
    missing = tmp_path / "zero9.json"
    assert cli.run(load_json, missing) == cli.EXIT_USER
    assert capsys.readouterr().err == f"error: ConfigError: deepspeed_config: {missing} does not exist\n"

    def load_in_usage():
        with cli.usage():
            load_json(missing)

    assert cli.run(load_in_usage) == cli.EXIT_USAGE


def test_corrupt_file_to_convert_names_command_and_class(tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 100)
    assert convert_main(["inspect", str(junk)]) == cli.EXIT_USER
    err = capsys.readouterr().err
    assert err.startswith("tleg-convert inspect: error: ConvertError: ") and str(junk) in err
    assert err.count("\n") == 1, err


def test_lost_peer_exits_3_and_says_which_rank(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    def collective():
        raise RuntimeError(GLOO_TIMEOUT)

    assert cli.run(collective) == cli.EXIT_PEER_LOST == 3  # slurm/learngene.sh requeues on 3
    err = capsys.readouterr().err
    assert err.startswith(f"[rank 1 on {socket.gethostname()}] error: PeerLost: a collective failed: Timed out")


def test_interrupt_exits_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert cli.run(interrupted) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "error: KeyboardInterrupt: interrupted\n"


def test_bugs_keep_their_traceback_and_tleg_traceback_shows_all(tmp_path, monkeypatch):
    def bug():
        raise ValueError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(ValueError, match="mat1"):
        cli.run(bug)
    monkeypatch.setenv("TLEG_TRACEBACK", "1")
    with pytest.raises(ConfigError, match="does not exist"):
        cli.run(load_json, tmp_path / "zero9.json")


def test_return_value_is_the_exit_code():
    assert cli.run(lambda code: code, 5) == 5
    assert cli.run(lambda: ["written.beton"]) == cli.EXIT_OK  # write_ffcv's main returns its files
    with pytest.raises(SystemExit) as e:  # argparse has printed its usage; its code 2 stands
        convert_main(["no-such-command"])
    assert e.value.code == cli.EXIT_USAGE == 2


def test_bad_flag_to_write_ffcv_is_a_usage_error(tmp_path, capsys):
    from tleg_dist.data.write_ffcv import main as write_ffcv

    argv = ["--source", "fashion_mnist", "--out-dir", str(tmp_path), "--page-size-mib", "3"]
    assert cli.run(write_ffcv, argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: DataError: page_size_mib must be a power of two")
