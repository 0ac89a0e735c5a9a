"""The training process: prefetched batches onto the device, the algorithm's update,
priorities back to the replay service, weights out through ParameterService, checkpoints."""
