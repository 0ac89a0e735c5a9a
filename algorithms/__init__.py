"""The math: networks, and one file per algorithm (its config, the policy actors run, the
update the learner runs, the replay table it needs). No sockets, no processes."""
