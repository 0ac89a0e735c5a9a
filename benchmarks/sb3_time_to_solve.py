"""Stable-Baselines3's time to the same target, for ``time_to_solve.py --sb3`` to put beside
shoal's (benchmark-only: SB3 and sb3-contrib are the ``bench`` extra, never imported by shoal).

    python benchmarks/sb3_time_to_solve.py --algo ppo --env CartPole-v1 --seed 0 \
        [--target-return 475] [--window 20] [--total-env-steps 500000] [--json]

One SB3 training per invocation (``stable_baselines3.<ALGO>``; TRPO is sb3-contrib's
``sb3_contrib.TRPO``) with rl-baselines3-zoo's tuned hyperparameters where the zoo has
them (``ZOO``; not its n_timesteps, the budget is --total-env-steps), SB3's defaults
otherwise, stopped by a callback once the mean of the last ``window`` finished training
episodes reaches the target: the same criterion ``shoal train --target-return`` uses. The
clock for "from the first env step" starts when SB3's training loop starts (after the
model is built and the envs reset), the command's clock when this script starts, before
torch and SB3 are imported. ``--target-return inf`` runs the whole budget (the return
reached in N env steps).

With --json the last line is one JSON object: reached, mean_return, env_steps,
seconds_from_first_step, seconds_total.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import argparse  # noqa: E402  (the clock above starts before the imports below)
import json  # noqa: E402
import sys  # noqa: E402
from collections import deque  # noqa: E402
from typing import Any  # noqa: E402

ZOO: dict[tuple[str, str], dict[str, Any]] = {
    # rl-baselines3-zoo hyperparams/{ppo,a2c,sac,dqn,trpo}.yml; "lin_x" schedules written
    # out; the zoo's LunarLander*-v2 and Hopper-v3 entries stand for gymnasium's v3 and v5.
    ("ppo", "CartPole-v1"): {"n_envs": 8, "n_steps": 32, "batch_size": 256,
                             "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                             "ent_coef": 0.0, "learning_rate": "lin_1e-3",
                             "clip_range": "lin_0.2"},
    # the zoo's Pendulum PPO explores with gSDE; this one does not (nor does shoal's preset)
    ("ppo", "Pendulum-v1"): {"n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9,
                             "n_epochs": 10, "ent_coef": 0.0, "learning_rate": 1e-3,
                             "clip_range": 0.2},
    ("ppo", "LunarLanderContinuous-v3"): {"n_envs": 16, "n_steps": 1024, "batch_size": 64,
                                          "gae_lambda": 0.98, "gamma": 0.999, "n_epochs": 4,
                                          "ent_coef": 0.01},
    ("a2c", "CartPole-v1"): {"n_envs": 8, "ent_coef": 0.0},
    ("a2c", "LunarLander-v3"): {"n_envs": 8, "gamma": 0.995, "n_steps": 5,
                                "learning_rate": "lin_0.00083", "ent_coef": 0.00001},
    ("sac", "Pendulum-v1"): {"n_envs": 1, "learning_rate": 1e-3},
    ("sac", "LunarLanderContinuous-v3"): {"n_envs": 1, "batch_size": 256,
                                          "learning_rate": "lin_7.3e-4",
                                          "buffer_size": 1_000_000, "ent_coef": "auto",
                                          "gamma": 0.99, "tau": 0.01, "train_freq": 1,
                                          "gradient_steps": 1, "learning_starts": 10_000,
                                          "policy_kwargs": {"net_arch": [400, 300]}},
    ("sac", "Hopper-v5"): {"n_envs": 1, "learning_starts": 10_000},  # the zoo's MuJoCo SAC
    # DQN: the zoo's exploration_fraction x its n_timesteps, in env steps (EXPLORATION_STEPS)
    ("dqn", "CartPole-v1"): {"n_envs": 1, "learning_rate": 2.3e-3, "batch_size": 64,
                             "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
                             "target_update_interval": 10, "train_freq": 256,
                             "gradient_steps": 128, "exploration_steps": 8_000,
                             "exploration_final_eps": 0.04,
                             "policy_kwargs": {"net_arch": [256, 256]}},
    ("dqn", "MountainCar-v0"): {"n_envs": 1, "learning_rate": 4e-3, "batch_size": 128,
                                "buffer_size": 10_000, "learning_starts": 1000, "gamma": 0.98,
                                "target_update_interval": 600, "train_freq": 16,
                                "gradient_steps": 8, "exploration_steps": 24_000,
                                "exploration_final_eps": 0.07,
                                "policy_kwargs": {"net_arch": [256, 256]}},
    ("dqn", "LunarLander-v3"): {"n_envs": 1, "learning_rate": 6.3e-4, "batch_size": 128,
                                "buffer_size": 50_000, "learning_starts": 0, "gamma": 0.99,
                                "target_update_interval": 250, "train_freq": 4,
                                "gradient_steps": -1, "exploration_steps": 12_000,
                                "exploration_final_eps": 0.1,
                                "policy_kwargs": {"net_arch": [256, 256]}},
    ("trpo", "CartPole-v1"): {"n_envs": 2, "n_steps": 512, "batch_size": 512,
                              "cg_damping": 1e-3, "gae_lambda": 0.98, "gamma": 0.99,
                              "learning_rate": 1e-3, "n_critic_updates": 20},
    # the zoo's Pendulum TRPO explores with gSDE (shoal's TRPO does not)
    ("trpo", "Pendulum-v1"): {"n_envs": 2, "n_steps": 1024, "gamma": 0.9,
                              "n_critic_updates": 15, "use_sde": True, "sde_sample_freq": 4},
}


def linear(start: float) -> Any:
    return lambda progress_remaining: progress_remaining * start


EXPLORATION_STEPS = "exploration_steps"
"""A DQN entry's epsilon schedule in env steps: SB3's exploration_fraction is a fraction of
the budget given to learn(), the zoo's of its own n_timesteps, so the schedule is written
as the env steps it spans and made a fraction of this run's budget."""


def hyperparameters(algo: str, env_id: str, total_env_steps: int | None = None,
                    ) -> dict[str, Any]:
    settings = dict(ZOO.get((algo, env_id), {"n_envs": 1}))
    for name, value in settings.items():
        if isinstance(value, str) and value.startswith("lin_"):
            settings[name] = linear(float(value[4:]))
    if EXPLORATION_STEPS in settings:
        steps = settings.pop(EXPLORATION_STEPS)
        settings["exploration_fraction"] = min(1.0, steps / (total_env_steps or steps))
    return settings


def model_type(algo: str) -> Any:
    """The SB3 class: sb3-contrib's for TRPO, stable_baselines3's for the rest."""
    if algo == "trpo":
        import sb3_contrib

        return sb3_contrib.TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", required=True, choices=["ppo", "a2c", "sac", "dqn", "trpo"])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-return", type=float, default=475.0)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--total-env-steps", type=int, default=500_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class StopAtTarget(BaseCallback):
        """Ends training when the last ``window`` episodes average the target."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: deque[float] = deque(maxlen=args.window)
            self.started = 0.0
            self.reached = False

        def _on_training_start(self) -> None:
            self.started = time.monotonic()

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            self.reached = (len(self.returns) == args.window
                            and sum(self.returns) / args.window >= args.target_return)
            return not self.reached

    settings = hyperparameters(args.algo, args.env, args.total_env_steps)
    envs = make_vec_env(args.env, n_envs=settings.pop("n_envs", 1), seed=args.seed)
    model = model_type(args.algo)("MlpPolicy", envs, seed=args.seed, device="cpu", **settings)
    callback = StopAtTarget()
    model.learn(total_timesteps=args.total_env_steps, callback=callback)
    now = time.monotonic()
    returns = list(callback.returns)
    result = {"reached": callback.reached,
              "mean_return": sum(returns) / len(returns) if returns else None,
              "env_steps": int(model.num_timesteps),
              "seconds_from_first_step": now - callback.started,
              "seconds_total": now - STARTED}
    print(f"sb3 {args.algo} {args.env} seed {args.seed}: reached {result['reached']}, "
          f"{result['env_steps']:,} env steps, {result['seconds_from_first_step']:.1f}s "
          f"from the first env step")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
