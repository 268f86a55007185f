"""The modules of the zoo's models: hand-written small ones (small.py), and the reference models
trained here (char_lm.py, digits_cnn.py, digits_vit.py). Weights, inputs and names: ../zoo.py."""
