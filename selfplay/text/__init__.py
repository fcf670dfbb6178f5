"""The text pipeline, for reward environments: what every text stage shares (`episodes`), imitation
(`imitate`), the text actor (`actor`), group-relative RL (`rl`), correction rounds (`corrections`), the
thinking budget (`think_budget`) and the verifier (`verifier`)."""
