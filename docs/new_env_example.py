import numpy as np

import envs


@envs.reward_env("reverse", expert=lambda task: task.data["word"][::-1])
def reverse(rng: np.random.Generator, *, length: int = 5):
    """Write a word backwards: `reverse stone:` is answered `enots` (scored by exact match)."""
    if not 1 <= length <= 20:
        raise ValueError(f"reverse: option 'length' must be in [1, 20], got {length}")
    word = "".join(rng.choice(list("abcdefghij"), size=length))
    return f"reverse {word}:", {"word": word}  # the prompt, and what scoring needs


envs.register("reverse", reverse)

env = envs.make("reverse", length=4)
task = env.sample(np.random.default_rng(0))
print(task.prompt, env.expert(task))  # reverse igfc: cfgi
print(env.score(task, "cfgi"), env.score(task, "igfc"), env.score(task, None))  # 1.0 0.0 0.0
envs.check_reward_env(env)  # the contract every reward environment must pass
obs, info = envs.make_gym("reverse").reset(seed=0)  # and a Gymnasium env
