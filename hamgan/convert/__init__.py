"""Converting the official TF checkpoints (HamGAN, TF-GAN's SAGAN example) into hamgan checkpoints.

- :mod:`hamgan.convert.tf_reader`: reading TF1 checkpoints (TensorFlow is an optional extra, ``hamgan[convert]``,
  imported only when a checkpoint is opened; or another Python's, ``--tf-python``);
- :mod:`hamgan.convert.mapping`: where each TF variable goes (names, layouts, spectral-norm vectors, roots);
- :mod:`hamgan.convert.official`: the checks and the conversion into a training checkpoint;
- :mod:`hamgan.convert.cli`: ``hamgan-convert official-tf CKPT --config CFG --out model.pt``.
"""
