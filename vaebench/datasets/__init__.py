"""Datasets, as conf/dataset/ has one file each: each is a function of the seed and its config
arguments that returns a `Dataset` (the three splits as tensors). A config entry names it by its home
here (`_target_: vaebench.datasets.mnist5k`); a dataset of your own returns `from_arrays(...)`.

- arrays.py: `Dataset`, `from_arrays`, splitting and binarisation;
- mnist_family.py: mnist5k (embedded, offline), mnist, fashion_mnist (torchvision), static_mnist (files);
- npz_file.py: your own arrays from an .npz file;
- with_factors.py: images with known generative factors, rendered (sprites) or DeepMind's dSprites file.
"""

from vaebench.datasets.arrays import Dataset, Factors, fixed_binarization, from_arrays
from vaebench.datasets.mnist_family import fashion_mnist, mnist, mnist5k, static_mnist
from vaebench.datasets.npz_file import npz
from vaebench.datasets.with_factors import dsprites, sprites

__all__ = ["Dataset", "Factors", "dsprites", "fashion_mnist", "fixed_binarization", "from_arrays", "mnist", "mnist5k",
           "npz", "sprites", "static_mnist"]
