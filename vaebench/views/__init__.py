"""What a person looks at: TensorBoard (board.py), the pictures of a model (pictures.py; as files for a
paper, figure_files.py), the console's progress bars and lines (console.py) and its tables of final
terms (summary.py). Views know names and tensors, not the run that produced them."""
