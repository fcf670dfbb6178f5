"""What every pipeline stage stands on: the run directory and its outputs (`rundir`), the resume state
(`resume`), the stage-2 loop of actors and a learner (`loop`), expert transcripts and their stage
(`transcripts`, `transcript_stage`), what the imitation of games and of text share (`training`), and
peak memory (`memory`)."""
