"""The arena: players built from specs, matches between them played resumably, the matches file, the
league table and ratings, training-time evaluation, and playing against a model.

    players     a spec string -> something that moves (experts, checkpoints, searches)
    matchplay   the deterministic schedule of games, played in worker processes
    matches     OUT/matches.jsonl and its checks
    ratings     Elo / Bradley-Terry fits, league tables, their PNGs
    league      what the training loop and the commands ask of the arena
    evaluation  the gauntlets and scores of a training run
    play        a person against a model, in the terminal
    cli         `python -m selfplay.arena`
"""
