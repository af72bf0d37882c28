"""Machine learning without federation: data (`data/`), models (`models/`), the local
training and evaluation loops (`training`), fine-tuning plans (`finetune`: which
parameters train and travel), and text helpers (`bigram`, `generate`).

May import `fedft.config`, `fedft.errors` and `fedft.state` (model files); nothing here
knows about Flower, privacy accounting or the round loop.
"""
