"""`selfplay`'s public API: every name in `__all__` resolves to the object it names, loading only what it
needs, and the package import itself stays light (no torch) for the commands and processes that need none."""

import subprocess
import sys
from pathlib import Path

import pytest

import envs
import selfplay


def test_every_public_name_resolves_to_its_module_object():
    assert sorted(selfplay._EXPORTS) == selfplay.__all__
    modules = {p.stem for p in Path(selfplay.__file__).parent.iterdir()}
    assert not modules & set(selfplay.__all__)  # `import selfplay.x` rebinds `selfplay.x` to the module
    for name, (module, attr) in selfplay._EXPORTS.items():
        assert getattr(selfplay, name) is getattr(__import__(f"selfplay.{module}", fromlist=[attr]), attr)
    assert selfplay.arena.__name__ == "selfplay.arena"  # submodules too
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        selfplay.nonesuch  # noqa: B018


def test_importing_the_package_loads_no_torch():
    code = "import sys, selfplay; assert 'torch' not in sys.modules, 'torch'; print(len(selfplay.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == len(selfplay.__all__)


def test_players_and_ratings_through_the_package(tmp_path):
    game = envs.make("tictactoe")
    assert selfplay.make_player("minimax", game).name == "minimax"
    records = selfplay.play_matches(
        "tictactoe", ["random", "minimax"], games=4, out_dir=tmp_path, progress=False
    )
    table = selfplay.league_table(selfplay.results_of(records), anchor="random", samples=20)
    assert table[0].name == "minimax" and sum(r.games for r in table) == 8
