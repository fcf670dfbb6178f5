"""The built-in reward environments, each with difficulty knobs and an exact expert.

| name | task | options (defaults) |
|---|---|---|
| `arithmetic` | `123*45=` -> `5535` | `digits=3`, `ops="+*"` (any of "+-*") |
| `countdown` | `make 42 from 3 7 25 6:` -> `7*6` | `numbers=4`, `max_number=25`, `max_target=100` |
| `sort` | `sort 5 3 9:` -> `3 5 9` | `length=5`, `max_value=99` |
| `guess_number` | multi-turn higher/lower | `low=1`, `high=100`, `max_turns=7` |

They are registered (lazily) in `envs/__init__.py`: `envs.make("countdown", numbers=6)`.
"""
