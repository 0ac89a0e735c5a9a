"""The collection process: envs, the policy on the CPU, adders that turn steps into items,
and following the learner's weights."""
