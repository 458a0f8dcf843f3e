"""The networks every stage shares: the architectures and their builders, the ImageNet weights read offline,
the dtype policy, Keras save and load of a model directory's checkpoints, the softmax temperature, and the
one inference loop (decode a chunk, predict it, collect)."""
