"""The game pipeline: imitation of expert transcripts (`imitate`, `imitation_data`), correction rounds
(`corrections`), and AlphaZero-style self-play: the game actor (`actor`) and the self-play stage on the
stage-2 loop (`selfplay`)."""
