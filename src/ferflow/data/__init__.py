"""Data: the Kaggle folders and the contest CSV read and checked, duplicates, the split, the
processed file, the explore tables, the embedded sample. No Keras.
"""
